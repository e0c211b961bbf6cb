// Signing up, confirming the email, logging in, and resetting a forgotten password.

import { useEffect, useState } from "react";
import { call, type Me } from "../api";
import { navigate } from "../route";
import { Field, FormPage, Link, NewPassword, Notice } from "../ui";

export function LogIn(props: { onLogIn: (me: Me) => void; notice?: string | null }) {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  return (
    <FormPage
      title="Log in"
      submit="Log in"
      before={
        <>
          <Notice ok={props.notice} />
        </>
      }
      after={
        <>
          <p>
            New here? <Link to="/signup">Create an account</Link>. Forgot your password?{" "}
            <Link to="/reset/request">Reset it</Link>.
          </p>
        </>
      }
      action={async () => {
        props.onLogIn(await call<Me>("POST", "/login", { email, password }));
      }}
    >
      <Field label="Email" type="email" name="email" value={email} onChange={setEmail} required autoComplete="username" />
      <Field
        label="Password"
        type="password"
        name="password"
        value={password}
        onChange={setPassword}
        required
        autoComplete="current-password"
      />
    </FormPage>
  );
}

export function SignUp() {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [again, setAgain] = useState("");
  const [sent, setSent] = useState<string | null>(null);
  if (sent) {
    return (
      <main className="narrow">
        <h1>Check your mail</h1>
        <p role="status">
          We sent a confirmation link to <strong>{sent}</strong>. Open it to confirm your address, then{" "}
          <Link to="/login">log in</Link>.
        </p>
      </main>
    );
  }
  return (
    <FormPage
      title="Create an account"
      submit="Create account"
      after={
        <>
          <p>
            Have an account? <Link to="/login">Log in</Link>.
          </p>
        </>
      }
      action={async () => {
        if (password !== again) throw new Error("the two passwords differ");
        const r = await call<{ email: string }>("POST", "/signup", { email, password });
        setSent(r.email);
      }}
    >
      <Field label="Email" type="email" name="email" value={email} onChange={setEmail} required autoComplete="email" />
      <NewPassword label="Password" value={password} onChange={setPassword} />
      <Field label="Password again" type="password" name="again" value={again} onChange={setAgain} required autoComplete="new-password" />
    </FormPage>
  );
}

export function Confirm(props: { token: string }) {
  const [state, setState] = useState<{ ok?: string; error?: string }>({});
  useEffect(() => {
    // A link opened twice confirms once: the second answer says the link is used.
    call<{ email: string }>("POST", "/confirm", { token: props.token })
      .then((r) => setState({ ok: `${r.email} is confirmed.` }))
      .catch((e: Error) => setState({ error: e.message }));
  }, [props.token]);
  return (
    <main className="narrow">
      <h1>Confirm your email</h1>
      {!state.ok && !state.error && <p role="status">Confirming…</p>}
      <Notice ok={state.ok} error={state.error} />
      {state.ok && (
        <p>
          <Link to="/login">Log in</Link>
        </p>
      )}
    </main>
  );
}

export function ResetRequest() {
  const [email, setEmail] = useState("");
  return (
    <FormPage
      title="Reset your password"
      submit="Send a reset link"
      after={
        <>
          <p>
            <Link to="/login">Back to log in</Link>
          </p>
        </>
      }
      action={async () => {
        await call("POST", "/reset/request", { email });
        return "If that address has an account, a reset link is on its way.";
      }}
    >
      <Field label="Email" type="email" name="email" value={email} onChange={setEmail} required autoComplete="email" />
    </FormPage>
  );
}

export function Reset(props: { token: string }) {
  const [password, setPassword] = useState("");
  return (
    <FormPage
      title="Choose a new password"
      submit="Set password"
      action={async () => {
        await call("POST", "/reset", { token: props.token, password });
        navigate("/login?reset=1", true);
      }}
    >
      <NewPassword label="New password" value={password} onChange={setPassword} hint="Every session of the account ends." />
    </FormPage>
  );
}
