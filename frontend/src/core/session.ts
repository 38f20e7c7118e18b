/** Who is logged in (GET /api/me); the login page when nobody is. */

export interface Me {
  subject: string;
  name: string;
  institution: string | null;
  institution_name: string;
  roles: string[];
  csrf_token: string | null;
}

export function loginUrl(): string {
  const back = location.pathname + location.search;
  return `/auth/login?return_to=${encodeURIComponent(back)}`;
}

/** The current user, or null after sending the browser to the login page. */
export async function currentUser(): Promise<Me | null> {
  const response = await fetch("/api/me", { headers: { Accept: "application/json" } });
  if (response.status === 401) {
    location.assign(loginUrl());
    return null;
  }
  if (!response.ok) throw new Error(`/api/me answered ${response.status}`);
  return (await response.json()) as Me;
}

export async function logout(me: Me): Promise<void> {
  const response = await fetch("/auth/logout", {
    method: "POST",
    headers: { "X-CSRF-Token": me.csrf_token ?? "", Accept: "application/json" },
  });
  const next = response.ok ? ((await response.json()) as { next?: string }).next : "/";
  location.assign(next ?? "/");
}
