// The official socket.io-client v4 (what web SDKs use) against /client: connect with handshake
// auth, send one message, receive it back as message:new. Prints one JSON line, exits 0 on success.
// usage: node client_roundtrip.cjs <url> <api_key> <user_id> <conversation_id> <websocket|polling>
const path = require("path");
const { io } = require(path.resolve(__dirname, "../../static/node_modules/socket.io-client"));

const [url, apiKey, userId, conversationId, transport] = process.argv.slice(2);
const clientId = "js-" + transport + "-" + Date.now();
const socket = io(url + "/client", {
  path: "/v1/socket.io",
  transports: [transport],
  upgrade: false,
  reconnection: false,
  auth: { api_key: apiKey, user_id: userId, device: { platform: "web", sdk_version: "js-test" } },
});
const done = (result, code) => {
  console.log(JSON.stringify(result));
  socket.close();
  process.exit(code);
};
setTimeout(() => done({ ok: false, error: "timeout" }, 1), 10000);
let ack = null;
let received = null;  // message:new may arrive before the ack: finish when both are in
const finish = () => {
  if (ack && received) done({ ok: true, transport: socket.io.engine.transport.name, ack, received }, 0);
};
socket.on("connect_error", (err) => done({ ok: false, error: err.message, data: err.data }, 1));
socket.on("message:new", (message) => {
  if (message.client_id === clientId) { received = message; finish(); }
});
socket.on("connect", async () => {
  ack = await socket.timeout(5000).emitWithAck("message:send", {
    conversation_id: conversationId, client_id: clientId, body: "hello from socket.io-client v4",
  });
  if (!ack.ok) done({ ok: false, ack }, 1);
  finish();
});
