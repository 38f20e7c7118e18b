/**
 * The one Socket.IO connection of a page (same origin, the session cookie authenticates it).
 * Consult notifications (`case:updated`) and the render stream (`render:*`) share it.
 */

import { io, type Socket } from "socket.io-client";

let socket: Socket | null = null;

/** The page's connection, opened on first use; reconnects by itself. */
export function liveSocket(): Socket {
  if (!socket) {
    socket = io({ path: "/socket.io", transports: ["websocket", "polling"], withCredentials: true });
  }
  return socket;
}

/** Resolves once the connection is up (at once if it already is). */
export function connected(s: Socket = liveSocket()): Promise<void> {
  if (s.connected) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => {
      s.off("connect", onConnect);
      reject(err);
    };
    const onConnect = (): void => {
      s.off("connect_error", onError);
      resolve();
    };
    s.once("connect", onConnect);
    s.once("connect_error", onError);
  });
}
