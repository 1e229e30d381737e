// The dashboard's /admin socket: authenticated with the current access token, refreshed on expiry.
import { clearSession, getSession, refreshSession, toLogin } from "./api.js";

const REFUSED = new Set(["missing_token", "invalid_token", "admin_disabled", "token_revoked", "session_revoked"]);

export function adminSocket() {
  // auth as a function: every (re)connect presents the newest access token
  const socket = window.io("/admin", {
    path: "/v1/socket.io",
    transports: ["websocket"],
    auth: (cb) => cb({ admin_token: getSession()?.access_token || "" }),
  });
  socket.on("connect_error", async (err) => {
    const code = err?.data?.error?.code;
    if (code === "token_expired") {
      try {
        await refreshSession();
        socket.connect();
      } catch {
        toLogin();
      }
    } else if (REFUSED.has(code)) {
      toLogin();
    }
  });
  // Signed out elsewhere, removed or disabled: the server ends the socket; sign in again.
  socket.on("session:ended", () => {
    clearSession();
    toLogin();
  });
  return socket;
}

// Emit with an acknowledgement; resolves with the ack, rejects on an error ack or a timeout.
export function request(socket, event, data, timeout = 10000) {
  return new Promise((resolve, reject) => {
    socket.timeout(timeout).emit(event, data, (err, ack) => {
      if (err) reject(err);
      else if (ack && ack.ok === false) reject(Object.assign(new Error(ack.error?.message || "failed"), ack));
      else resolve(ack);
    });
  });
}
