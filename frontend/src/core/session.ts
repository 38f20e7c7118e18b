/** Who is logged in (GET /api/me), the login page when nobody is, and the interface settings. */

import { forgetDrafts } from "./drafts";

export interface Me {
  subject: string;
  name: string;
  institution: string | null;
  institution_name: string;
  roles: string[];
  specialty?: string;
  csrf_token: string | null;
}

/** GET /api/ui: how the installation shows things (platform/consilium/web_static.py) */
export interface UiConfig {
  time_zone: string;
  default_language: string;
  languages: string[];
  ae_title: string;
  dicom_port: number;
}

export function loginUrl(): string {
  const back = location.pathname + location.search;
  return `/auth/login?return_to=${encodeURIComponent(back)}`;
}

export async function uiConfig(): Promise<UiConfig> {
  const response = await fetch("/api/ui", { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`/api/ui answered ${response.status}`);
  return (await response.json()) as UiConfig;
}

/** The current user, or null (after sending the browser to the login page, unless told not to). */
export async function currentUser(options: { redirect: boolean } = { redirect: true }): Promise<Me | null> {
  const response = await fetch("/api/me", { headers: { Accept: "application/json" } });
  if (response.status === 401) {
    if (options.redirect) location.assign(loginUrl());
    return null;
  }
  if (!response.ok) throw new Error(`/api/me answered ${response.status}`);
  return (await response.json()) as Me;
}

export async function logout(me: Me): Promise<void> {
  forgetDrafts(me.subject);
  const response = await fetch("/auth/logout", {
    method: "POST",
    headers: { "X-CSRF-Token": me.csrf_token ?? "", Accept: "application/json" },
  });
  const next = response.ok ? ((await response.json()) as { next?: string }).next : "/";
  location.assign(next ?? "/");
}

export const hasRole = (me: Me, ...roles: string[]): boolean => roles.some((r) => me.roles.includes(r));
