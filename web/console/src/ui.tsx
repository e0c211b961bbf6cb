// Building blocks the pages share: labelled fields, forms that report their errors,
// a copy button, and links that navigate in place.

import { type FormEvent, type ReactNode, useId, useState } from "react";
import { navigate } from "./route";

/** A link within the console. */
export function Link(props: { to: string; children: ReactNode; current?: boolean }) {
  return (
    <a
      href={props.to}
      aria-current={props.current ? "page" : undefined}
      onClick={(e) => {
        if (e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return;
        e.preventDefault();
        navigate(props.to);
      }}
    >
      {props.children}
    </a>
  );
}

/** A text input with its label (and a hint read with it). */
export function Field(props: {
  label: string;
  value: string;
  onChange: (v: string) => void;
  type?: string;
  hint?: string;
  required?: boolean;
  autoComplete?: string;
  name?: string;
  minLength?: number;
  maxLength?: number;
}) {
  const id = useId();
  return (
    <div className="field">
      <label htmlFor={id}>{props.label}</label>
      <input
        id={id}
        name={props.name}
        type={props.type ?? "text"}
        value={props.value}
        required={props.required}
        autoComplete={props.autoComplete}
        minLength={props.minLength}
        maxLength={props.maxLength}
        aria-describedby={props.hint ? `${id}-hint` : undefined}
        onChange={(e) => props.onChange(e.target.value)}
      />
      {props.hint && (
        <small id={`${id}-hint`} className="hint">
          {props.hint}
        </small>
      )}
    </div>
  );
}

/** A checkbox with its label. */
export function Check(props: { label: string; checked: boolean; onChange: (v: boolean) => void }) {
  const id = useId();
  return (
    <div className="check">
      <input id={id} type="checkbox" checked={props.checked} onChange={(e) => props.onChange(e.target.checked)} />
      <label htmlFor={id}>{props.label}</label>
    </div>
  );
}

/** An error or notice the screen reader announces. */
export function Notice(props: { error?: string | null; ok?: string | null }) {
  if (props.error) {
    return (
      <p className="error" role="alert">
        {props.error}
      </p>
    );
  }
  if (props.ok) {
    return (
      <p className="ok" role="status">
        {props.ok}
      </p>
    );
  }
  return null;
}

/** A form whose submit runs `action`, disabled while it runs, showing its error. */
export function Form(props: {
  label: string;
  submit: string;
  action: () => Promise<string | void>;
  children: ReactNode;
  danger?: boolean;
}) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [ok, setOk] = useState<string | null>(null);
  const onSubmit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    setOk(null);
    try {
      const done = await props.action();
      if (done) setOk(done);
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form aria-label={props.label} onSubmit={onSubmit} aria-busy={busy}>
      {props.children}
      <Notice error={error} ok={ok} />
      <button type="submit" disabled={busy} className={props.danger ? "danger" : undefined}>
        {busy ? "Working…" : props.submit}
      </button>
    </form>
  );
}

/** Text to copy, shown in full, with a button that copies it. */
export function Secret(props: { label: string; value: string }) {
  const id = useId();
  const [copied, setCopied] = useState(false);
  return (
    <div className="secret">
      <label htmlFor={id}>{props.label}</label>
      <textarea id={id} readOnly value={props.value} rows={3} onFocus={(e) => e.target.select()} />
      <button
        type="button"
        onClick={async () => {
          await navigator.clipboard.writeText(props.value);
          setCopied(true);
          setTimeout(() => setCopied(false), 2000);
        }}
      >
        {copied ? "Copied" : `Copy ${props.label.toLowerCase()}`}
      </button>
      <span className="visually-hidden" role="status">
        {copied ? "Copied to the clipboard" : ""}
      </span>
    </div>
  );
}

/** A page that is one form under its heading (log in, sign up, resets). */
export function FormPage(props: {
  title: string;
  submit: string;
  action: () => Promise<string | void>;
  children: ReactNode;
  before?: ReactNode;
  after?: ReactNode;
}) {
  return (
    <main className="narrow">
      <h1>{props.title}</h1>
      {props.before}
      <Form label={props.title} submit={props.submit} action={props.action}>
        {props.children}
      </Form>
      {props.after}
    </main>
  );
}

/** A new password's field, with the rule the console holds it to. */
export function NewPassword(props: { label: string; value: string; onChange: (v: string) => void; hint?: string }) {
  return (
    <Field
      label={props.label}
      type="password"
      name="new-password"
      value={props.value}
      onChange={props.onChange}
      required
      minLength={10}
      autoComplete="new-password"
      hint={`At least 10 characters.${props.hint ? ` ${props.hint}` : ""}`}
    />
  );
}
