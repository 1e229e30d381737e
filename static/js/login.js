// Sign in, sign up, or accept an invitation (login.html#invite=TOKEN), then go where the user was headed.
import { acceptInvite, getSession, login, signup } from "./api.js";
import { notice } from "./dom.js";

const forms = {
  login: document.getElementById("login-form"),
  signup: document.getElementById("signup-form"),
  invite: document.getElementById("invite-form"),
};
const message = document.getElementById("auth-message");

function inviteToken() {
  const match = location.hash.match(/^#invite=(.+)$/);
  return match ? decodeURIComponent(match[1]) : null;
}

function show() {
  const mode = inviteToken() ? "invite" : location.hash === "#signup" ? "signup" : "login";
  for (const [name, form] of Object.entries(forms)) form.hidden = name !== mode;
  message.replaceChildren();
  forms[mode].querySelector("input")?.focus();
}

function destination() {
  const next = new URLSearchParams(location.search).get("next");
  // Only same-site paths: an open redirect would let a link send people anywhere after login.
  return next && next.startsWith("/") && !next.startsWith("//") ? next : "/index.html";
}

function describe(err) {
  if (err.status === 429) {
    const wait = err.retryAfter ? ` Try again in ${Math.ceil(err.retryAfter / 60)} minute(s).` : "";
    return `Too many failed attempts.${wait}`;
  }
  if (err.code === "validation_error") return "Please check the form: " + (err.details?.reason || err.message);
  return err.message;
}

function submitWith(form, action) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      await action(Object.fromEntries(new FormData(form)));
      location.replace(destination());
    } catch (err) {
      notice(message, describe(err));
    } finally {
      button.disabled = false;
    }
  });
}

submitWith(forms.login, (f) => login(f.email, f.password));
submitWith(forms.signup, (f) => signup({ app_name: f.app_name, name: f.name, email: f.email, password: f.password }));
submitWith(forms.invite, (f) => acceptInvite({ token: inviteToken(), password: f.password, name: f.name || null }));

window.addEventListener("hashchange", show);
if (getSession() && !inviteToken() && location.hash !== "#signup") {
  location.replace(destination());
} else {
  show();
}
