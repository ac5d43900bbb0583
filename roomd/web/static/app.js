// The roomd console: renders the snapshots of /admin/v1/events and acts through the admin API.
// Everything a client sent (names, roomInfo) is written with textContent, never as HTML.
"use strict";

let last = null; // the latest snapshot, and when it arrived
let arrivedAt = 0;

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    if (cell instanceof Node) td.appendChild(cell);
    else td.textContent = String(cell);
    tr.appendChild(td);
  }
  return tr;
}

async function act(method, path, question) {
  if (!window.confirm(question)) return;
  const response = await fetch(path, { method, headers: { "X-Roomd-Console": "1" }, credentials: "same-origin" });
  const body = await response.json().catch(() => ({}));
  if (body.code !== 0) window.alert(`${method} ${path}: ${body.detail || response.status}`);
}

function roomPath(room) {
  return `/admin/v1/rooms/${encodeURIComponent(room.kind)}/${encodeURIComponent(room.roomID)}`;
}

function renderRoom(room) {
  const box = el("div", null, "room");
  box.dataset.room = room.roomID;
  const title = el("h3");
  title.appendChild(el("span", `${room.kind} / ${room.roomID}`));
  title.appendChild(el("span", room.state));
  title.appendChild(el("span", room.roomInfo, "info"));
  const close = el("button", "Close room", "danger close-room");
  close.addEventListener("click", () => act("DELETE", roomPath(room), `Close room ${room.roomID}?`));
  title.appendChild(close);
  box.appendChild(title);
  const members = document.createElement("table");
  members.className = "members";
  const head = row(["member", "name", "evicted in", ""]);
  head.querySelectorAll("td").forEach((td) => (td.style.fontWeight = "bold"));
  members.appendChild(head);
  for (const member of room.members) {
    const countdown = el("span", "", "countdown");
    countdown.dataset.deadlineIn = member.deadlineIn;
    const kick = el("button", "Kick", "danger kick");
    kick.dataset.member = member.userID;
    kick.addEventListener("click", () =>
      act("DELETE", `${roomPath(room)}/members/${encodeURIComponent(member.userID)}`, `Kick ${member.userID}?`),
    );
    const tr = row([member.userID, member.userName, countdown, kick]);
    tr.className = "member";
    tr.dataset.member = member.userID;
    members.appendChild(tr);
  }
  box.appendChild(members);
  if (room.audiences.length) {
    box.appendChild(el("p", `audiences: ${room.audiences.map((a) => a.userID).join(", ")}`));
  }
  return box;
}

function render(snapshot) {
  const kinds = document.querySelector("#kinds tbody");
  kinds.replaceChildren(
    ...Object.entries(snapshot.kinds).map(([kind, k]) => row([kind, k.waiting, k.active, k.members, k.audiences])),
  );
  document.getElementById("im-queue").textContent = String(snapshot.imQueueDepth);
  const rooms = document.getElementById("rooms");
  rooms.replaceChildren(...snapshot.rooms.map(renderRoom));
  if (!snapshot.rooms.length) rooms.appendChild(el("p", "No rooms."));
  const closes = document.querySelector("#closes tbody");
  closes.replaceChildren(
    ...snapshot.closes
      .slice()
      .reverse()
      .map((c) => row([new Date(c.time * 1000).toLocaleTimeString(), c.kind, c.roomID, c.reason])),
  );
  document.getElementById("actors").textContent = JSON.stringify(snapshot.actors, null, 1);
  tick();
}

function tick() {
  if (!last) return;
  const elapsed = (performance.now() - arrivedAt) / 1000;
  for (const node of document.querySelectorAll(".countdown")) {
    const left = Math.max(0, Number(node.dataset.deadlineIn) - elapsed);
    node.textContent = `${left.toFixed(1)} s`;
    node.classList.toggle("low", left < 5);
  }
}

function connect() {
  const status = document.getElementById("status");
  const source = new EventSource("/admin/v1/events");
  source.addEventListener("snapshot", (message) => {
    last = JSON.parse(message.data);
    arrivedAt = performance.now();
    status.textContent = `live · ${new Date(last.time * 1000).toLocaleTimeString()}`;
    render(last);
  });
  source.addEventListener("error", () => {
    status.textContent = "reconnecting…";
  });
}

document.addEventListener("DOMContentLoaded", () => {
  connect();
  setInterval(tick, 250);
});
