// The account: its password, and the payments wallet whose balance and channels to show.

import { useEffect, useState } from "react";
import { call, type Billing, type Me } from "../api";
import { amount, time } from "../format";
import { Field, Form, NewPassword, Notice } from "../ui";

export function Account(props: { me: Me; onSession: (me: Me) => void }) {
  const [current, setCurrent] = useState("");
  const [next, setNext] = useState("");
  const [billing, setBilling] = useState<Billing | null>(null);
  const [wallet, setWallet] = useState("");
  const [error, setError] = useState<string | null>(null);
  const load = () =>
    call<Billing>("GET", "/billing")
      .then((b) => {
        setBilling(b);
        setWallet(b.wallet ?? "");
      })
      .catch((e: Error) => setError(e.message));
  useEffect(() => {
    load();
  }, []);
  return (
    <main>
      <h1>Account</h1>
      <p>
        Logged in as <strong>{props.me.email}</strong>.
      </p>
      <section aria-labelledby="pw-h">
        <h2 id="pw-h">Change password</h2>
        <Form
          label="Change password"
          submit="Change password"
          action={async () => {
            props.onSession(await call<Me>("POST", "/password", { current, new: next }));
            setCurrent("");
            setNext("");
            return "Changed. Every other session of this account has ended.";
          }}
        >
          <Field label="Current password" type="password" value={current} onChange={setCurrent} required autoComplete="current-password" />
          <NewPassword label="New password" value={next} onChange={setNext} />
        </Form>
      </section>
      <section aria-labelledby="billing-h">
        <h2 id="billing-h">Billing</h2>
        <Notice error={error} />
        {billing && !billing.payments && <p>This satellite does not take payments.</p>}
        {billing?.payments && (
          <>
            <Form
              label="Payments wallet"
              submit="Save wallet"
              action={async () => {
                await call("PUT", "/account/wallet", { address: wallet.trim() || null });
                await load();
                return wallet.trim() ? "Wallet linked." : "Wallet unlinked.";
              }}
            >
              <Field label="Wallet address" value={wallet} onChange={setWallet} hint="The 0x… address your uplink pays from (empty: unlink)." />
            </Form>
            {billing.wallet && (
              <>
                <p>
                  Balance not locked in a channel: <strong data-testid="balance">{amount(billing.balance ?? 0)}</strong>
                </p>
                <table className="list" aria-label="Payment channels">
                  <thead>
                    <tr>
                      <th scope="col">Channel</th>
                      <th scope="col">Left in it</th>
                      <th scope="col">Paid since the last claim</th>
                      <th scope="col">Expires</th>
                    </tr>
                  </thead>
                  <tbody>
                    {(billing.channels ?? []).map((c) => (
                      <tr key={c.id}>
                        <td>{c.id}</td>
                        <td>{amount(c.value)}</td>
                        <td>{amount(c.authorized)}</td>
                        <td>{time(c.expiration)}</td>
                      </tr>
                    ))}
                    {(billing.channels ?? []).length === 0 && (
                      <tr>
                        <td colSpan={4}>No channels.</td>
                      </tr>
                    )}
                  </tbody>
                </table>
              </>
            )}
          </>
        )}
      </section>
    </main>
  );
}
