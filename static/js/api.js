// The dashboard's one door to the admin API: keeps the token pair, refreshes silently, logs out.
const SESSION_KEY = "replyhq.session";

export class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.message || `request failed (${status})`);
    this.status = status;
    this.code = err.code || "error";
    this.details = err.details;
  }
}

export function getSession() {
  try {
    return JSON.parse(localStorage.getItem(SESSION_KEY)) || null;
  } catch {
    return null;
  }
}

function saveSession(body) {
  const session = {
    access_token: body.access_token,
    refresh_token: body.refresh_token,
    admin: body.admin,
    app: body.app,
  };
  localStorage.setItem(SESSION_KEY, JSON.stringify(session));
  return session;
}

export function clearSession() {
  localStorage.removeItem(SESSION_KEY);
}

async function send(method, path, body, token) {
  const headers = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  return { res, data };
}

// One refresh at a time: refresh tokens work once, so parallel 401s must share the same rotation.
let refreshing = null;

async function rotate(refreshToken) {
  const { res, data } = await send("POST", "/admin/auth/refresh", { refresh_token: refreshToken });
  if (!res.ok) throw new ApiError(res.status, data);
  return saveSession(data);
}

export function refreshSession() {
  if (!refreshing) {
    const presented = getSession()?.refresh_token;
    refreshing = (async () => {
      if (!presented) throw new ApiError(401, { error: { code: "signed_out", message: "signed out" } });
      try {
        return await rotate(presented);
      } catch (err) {
        // Another tab may have rotated it first and stored the new pair: use that one.
        const current = getSession();
        if (current && current.refresh_token !== presented) return current;
        throw err;
      }
    })().finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

export function toLogin() {
  const next = location.pathname + location.search;
  location.replace(`/login.html?next=${encodeURIComponent(next)}`);
}

// Call the admin API as the signed-in admin. An expired access token is refreshed and the call retried.
export async function api(path, { method = "GET", body } = {}) {
  let session = getSession();
  let { res, data } = await send(method, path, body, session?.access_token);
  if (res.status === 401 && data?.error?.code === "token_expired" && session?.refresh_token) {
    try {
      session = await refreshSession();
    } catch (err) {
      clearSession();
      toLogin();
      throw err;
    }
    ({ res, data } = await send(method, path, body, session.access_token));
  }
  if (res.status === 401) {
    clearSession();
    toLogin();
  }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

async function authenticate(path, body) {
  const { res, data } = await send("POST", path, body);
  if (!res.ok) {
    const err = new ApiError(res.status, data);
    err.retryAfter = Number(res.headers.get("retry-after")) || null;
    throw err;
  }
  return saveSession(data);
}

export const login = (email, password) => authenticate("/admin/auth/login", { email, password });
export const signup = (fields) => authenticate("/admin/auth/signup", fields);
export const acceptInvite = (fields) => authenticate("/admin/auth/accept-invite", fields);

export async function logout() {
  const session = getSession();
  clearSession();
  if (session?.refresh_token) {
    await send("POST", "/admin/auth/logout", { refresh_token: session.refresh_token }).catch(() => null);
  }
  location.replace("/login.html");
}
