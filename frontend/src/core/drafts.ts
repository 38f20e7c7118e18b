/**
 * Unsaved work is never lost: what is typed into a form is kept in localStorage on every input
 * event (synchronously: a reload a moment after the last key press still finds it), restored
 * when the form opens again, and removed once the work is sent. Leaving the page while a form
 * holds work that is not sent (or not yet saved on the server) asks first (beforeunload).
 *
 * Keys are per user (`consilium:draft:<subject>:<what>`), and a user's drafts are removed at
 * log-out: a shared workstation keeps no patient text for the next person.
 */

const PREFIX = "consilium:draft:";
let subject = "";

export function useDraftsOf(user: string): void {
  subject = user;
}

export class LocalDraft<T> {
  readonly key: string;
  constructor(what: string) {
    this.key = `${PREFIX}${subject}:${what}`;
  }

  load(): T | null {
    try {
      const raw = localStorage.getItem(this.key);
      return raw ? (JSON.parse(raw) as T) : null;
    } catch {
      return null;
    }
  }

  save(value: T): void {
    try {
      localStorage.setItem(this.key, JSON.stringify(value));
    } catch (err) {
      console.warn("draft not kept", err); // storage full or disabled: the server copy remains
    }
  }

  clear(): void {
    localStorage.removeItem(this.key);
  }
}

/** keeps the values of `fields` (by name) as they are typed; restores them now; true if restored */
export function keepFields(
  draft: LocalDraft<Record<string, string>>,
  fields: (HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement)[],
  onChange: () => void = () => {},
): boolean {
  const stored = draft.load();
  let restored = false;
  if (stored) {
    for (const field of fields) {
      const value = stored[field.name];
      if (typeof value === "string" && value !== field.value) {
        field.value = value;
        restored = true;
      }
    }
  }
  const save = () => {
    const values: Record<string, string> = {};
    for (const field of fields) values[field.name] = field.value;
    if (Object.values(values).some((v) => v.trim())) draft.save(values);
    else draft.clear();
    onChange();
  };
  for (const field of fields) {
    field.addEventListener("input", save);
    field.addEventListener("change", save);
  }
  return restored;
}

const guards = new Set<() => boolean>();
let leavingOnPurpose = false;

/** `unsaved()` says whether leaving now would lose work; returns the function that forgets it */
export function guardUnsaved(unsaved: () => boolean): () => void {
  guards.add(unsaved);
  return () => guards.delete(unsaved);
}

/** navigation the page itself starts after the work was sent (no question then) */
export function leave(url: string): void {
  leavingOnPurpose = true;
  location.assign(url);
}

export function hasUnsavedWork(): boolean {
  return [...guards].some((g) => g());
}

window.addEventListener("beforeunload", (event) => {
  if (leavingOnPurpose || !hasUnsavedWork()) return;
  event.preventDefault();
  event.returnValue = ""; // the browser asks in its own words
});

/** at log-out: this user's drafts go */
export function forgetDrafts(user: string): void {
  const mine = `${PREFIX}${user}:`;
  for (let i = localStorage.length - 1; i >= 0; i--) {
    const key = localStorage.key(i);
    if (key?.startsWith(mine)) localStorage.removeItem(key);
  }
}
