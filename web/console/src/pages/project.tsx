// One project: its usage, API keys, access grants made in this page, buckets seen
// through a grant, and its settings.

import { useCallback, useEffect, useState } from "react";
import { decryptPath, openMeta, parseGrant, restrictGrant, serializeGrant, type Caveat, type Grant } from "../access";
import { call, type Day, type KeyEntry, type ListedObject, type Project, type SatelliteInfo, type ServerCaveat, type Usage } from "../api";
import { BarChart } from "../chart";
import { amount, bytes, monthOf, time } from "../format";
import { fromHex, makeGrant } from "../grant";
import { navigate } from "../route";
import { Check, Field, Form, Link, Notice, Secret } from "../ui";

const TABS = [
  ["usage", "Usage"],
  ["keys", "API keys"],
  ["access", "Access grants"],
  ["buckets", "Buckets"],
  ["settings", "Settings"],
] as const;

/** What the pages of one project share: grants live only in this page's memory. */
export interface Held {
  grant: Grant | null;
  setGrant: (g: Grant | null) => void;
  newKey: string;
  setNewKey: (k: string) => void;
}

export function ProjectPage(props: { id: string; tab: string; held: Held }) {
  const [project, setProject] = useState<Project | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    setProject(null);
    call<Project>("GET", `/projects/${encodeURIComponent(props.id)}`)
      .then(setProject)
      .catch((e: Error) => setError(e.message));
  }, [props.id]);
  if (error) {
    return (
      <main>
        <h1>Project</h1>
        <Notice error={error} />
        <Link to="/">All projects</Link>
      </main>
    );
  }
  if (!project) return <main aria-busy="true">Loading…</main>;
  const tab = TABS.some(([t]) => t === props.tab) ? props.tab : "usage";
  const base = `/projects/${project.id}`;
  return (
    <main>
      <p className="crumbs">
        <Link to="/">Projects</Link> /
      </p>
      <h1>{project.name}</h1>
      <p className="sub">
        Project id <code>{project.id}</code>
      </p>
      <nav aria-label="Project" className="tabs">
        {TABS.map(([t, label]) => (
          <Link key={t} to={`${base}/${t}`} current={t === tab}>
            {label}
          </Link>
        ))}
      </nav>
      {tab === "usage" && <UsageTab project={project} />}
      {tab === "keys" && <KeysTab project={project} held={props.held} />}
      {tab === "access" && <AccessTab project={project} held={props.held} />}
      {tab === "buckets" && <BucketsTab project={project} held={props.held} />}
      {tab === "settings" && <SettingsTab project={project} onRenamed={setProject} />}
    </main>
  );
}

function limit(n: number | null, f: (n: number) => string): string {
  return n === null ? "no limit" : f(n);
}

function UsageTab({ project }: { project: Project }) {
  const [month, setMonth] = useState(monthOf(new Date()));
  const [usage, setUsage] = useState<Usage | null>(null);
  const [error, setError] = useState<string | null>(null);
  const load = useCallback(() => {
    setError(null);
    call<Usage>("GET", `/projects/${project.id}/usage?month=${encodeURIComponent(month)}`)
      .then(setUsage)
      .catch((e: Error) => setError(e.message));
  }, [project.id, month]);
  useEffect(load, [load]);
  // Every day of the month on the axis; the rolled-up ones (and today) have values.
  const [y, m] = (usage?.month ?? month).split("-").map(Number);
  const length = new Date(Date.UTC(y, m, 0)).getUTCDate();
  const days = Array.from({ length }, (_, i) => `${usage?.month ?? month}-${String(i + 1).padStart(2, "0")}`);
  const byDay = new Map((usage?.days ?? []).map((d) => [d.day, d]));
  const series = (f: (d: Day) => number) => days.map((day) => (byDay.has(day) ? f(byDay.get(day)!) : null));
  const labels = days.map((d) => (d === usage?.partial ? `${d} (so far)` : d));
  const count = (n: number) => amount(n);
  return (
    <section aria-labelledby="usage-h">
      <h2 id="usage-h">Usage</h2>
      <div className="row">
        <div className="field">
          <label htmlFor="month">Month (UTC)</label>
          <input id="month" type="month" value={month} onChange={(e) => e.target.value && setMonth(e.target.value)} />
        </div>
        <button type="button" onClick={load}>
          Refresh
        </button>
      </div>
      <Notice error={error} />
      {usage && (
        <>
          <table className="facts" aria-label="Now and the project's limits">
            <thead>
              <tr>
                <th scope="col"></th>
                <th scope="col">Now</th>
                <th scope="col">Limit</th>
              </tr>
            </thead>
            <tbody>
              <tr>
                <th scope="row">Stored</th>
                <td data-testid="stored-bytes">{bytes(usage.stored.bytes)}</td>
                <td>{limit(usage.limits.storage, bytes)}</td>
              </tr>
              <tr>
                <th scope="row">Segments</th>
                <td>{amount(usage.stored.segments)}</td>
                <td>{limit(usage.limits.segments, amount)}</td>
              </tr>
              <tr>
                <th scope="row">Egress this month</th>
                <td>{bytes(usage.invoice.bandwidth.get)}</td>
                <td>{limit(usage.limits.egress, bytes)}</td>
              </tr>
            </tbody>
          </table>
          <div className="charts">
            <BarChart title="Stored" days={labels} values={series((d) => d.bytes)} format={bytes} />
            <BarChart title="Egress" days={labels} values={series((d) => d.egress)} format={bytes} />
            <BarChart title="Segments" days={labels} values={series((d) => d.segments)} format={count} />
          </div>
          {usage.partial && (
            <p className="hint">
              {usage.partial} is today, so far: its egress and sizes count now, its storage once the day is over.
            </p>
          )}
          <h3>Invoice for {usage.month}</h3>
          <table className="facts" aria-label={`Invoice for ${usage.month}`}>
            <tbody>
              <tr>
                <th scope="row">Storage ({amount(Math.round(usage.invoice.byte_hours / 1e9))} GB-hours)</th>
                <td>{amount(usage.invoice.storage)}</td>
              </tr>
              <tr>
                <th scope="row">Egress ({bytes(usage.invoice.bandwidth.get)})</th>
                <td>{amount(usage.invoice.egress)}</td>
              </tr>
              <tr>
                <th scope="row">Segments ({amount(Math.round(usage.invoice.segment_hours))} segment-hours)</th>
                <td>{amount(usage.invoice.segments)}</td>
              </tr>
              <tr>
                <th scope="row">Total</th>
                <td data-testid="invoice-total">{amount(usage.invoice.total)}</td>
              </tr>
              <tr>
                <th scope="row">Paid through payment channels ({usage.invoice.payments} payments)</th>
                <td>{amount(usage.invoice.paid)}</td>
              </tr>
              <tr>
                <th scope="row">Due</th>
                <td>{amount(usage.invoice.due)}</td>
              </tr>
            </tbody>
          </table>
          <p className="hint">Amounts are in the satellite's payment units (by default, millionths of a dollar).</p>
        </>
      )}
    </section>
  );
}

/** A caveat in words. */
function describe(c: ServerCaveat): string {
  if (c === "ReadOnly") return "read-only";
  if ("Prefix" in c) {
    return c.Prefix.prefix ? `bucket ${c.Prefix.bucket}, an encrypted key prefix` : `bucket ${c.Prefix.bucket} only`;
  }
  return `until ${time(c.NotAfter)}`;
}

function KeysTab({ project, held }: { project: Project; held: Held }) {
  const [keys, setKeys] = useState<KeyEntry[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [name, setName] = useState("");
  const [readOnly, setReadOnly] = useState(false);
  const [bucket, setBucket] = useState("");
  const [until, setUntil] = useState("");
  const [made, setMade] = useState<string | null>(null);
  const [revoking, setRevoking] = useState<string | null>(null);
  const load = useCallback(() => {
    call<{ keys: KeyEntry[] }>("GET", `/projects/${project.id}/keys`)
      .then((r) => setKeys(r.keys))
      .catch((e: Error) => setError(e.message));
  }, [project.id]);
  useEffect(load, [load]);
  return (
    <section aria-labelledby="keys-h">
      <h2 id="keys-h">API keys</h2>
      <Notice error={error} />
      {keys && keys.length === 0 && <p>No API keys yet.</p>}
      {keys && keys.length > 0 && (
        <table className="list" aria-label="API keys">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Restrictions</th>
              <th scope="col">Made</th>
              <th scope="col">State</th>
            </tr>
          </thead>
          <tbody>
            {keys.map((k) => (
              <tr key={k.head}>
                <td>
                  {k.name}
                  <br />
                  <small>
                    <code>{k.head}</code>
                  </small>
                </td>
                <td>{k.caveats.length ? k.caveats.map(describe).join("; ") : "none"}</td>
                <td>{time(k.created)}</td>
                <td>
                  {k.revoked ? (
                    `revoked ${time(k.revoked)}`
                  ) : revoking === k.head ? (
                    <span className="row">
                      <button
                        type="button"
                        className="danger"
                        aria-label={`Revoke ${k.name} now`}
                        onClick={async () => {
                          try {
                            await call("DELETE", `/projects/${project.id}/keys/${k.head}`);
                            setRevoking(null);
                            load();
                          } catch (e) {
                            setError((e as Error).message);
                          }
                        }}
                      >
                        Revoke now
                      </button>
                      <button type="button" onClick={() => setRevoking(null)}>
                        Keep
                      </button>
                    </span>
                  ) : (
                    <button type="button" aria-label={`Revoke ${k.name}`} onClick={() => setRevoking(k.head)}>
                      Revoke
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <h3>New API key</h3>
      {made && (
        <div className="made">
          <Notice ok="The key is shown only now: copy it, or make an access grant with it." />
          <Secret label="API key" value={made} />
          <button
            type="button"
            onClick={() => {
              held.setNewKey(made);
              navigate(`/projects/${project.id}/access`);
            }}
          >
            Make an access grant with this key
          </button>
        </div>
      )}
      <Form
        label="New API key"
        submit="Create key"
        action={async () => {
          const body: Record<string, unknown> = { name, read_only: readOnly };
          if (bucket) body.bucket = bucket;
          if (until) {
            const t = Math.floor(new Date(until).getTime() / 1000);
            if (!Number.isFinite(t)) throw new Error("the expiry is not a date and time");
            body.not_after = t;
          }
          const r = await call<{ key: string }>("POST", `/projects/${project.id}/keys`, body);
          setMade(r.key);
          setName("");
          load();
        }}
      >
        <Field label="Key name" value={name} onChange={setName} required maxLength={64} />
        <Check label="Read-only (no uploads or deletes)" checked={readOnly} onChange={setReadOnly} />
        <Field label="Only this bucket (optional)" value={bucket} onChange={setBucket} />
        <Field label="Expires (optional)" type="datetime-local" value={until} onChange={setUntil} />
      </Form>
    </section>
  );
}

function AccessTab({ project, held }: { project: Project; held: Held }) {
  const [satellite, setSatellite] = useState<SatelliteInfo | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [apiKey, setApiKey] = useState(held.newKey);
  const [passphrase, setPassphrase] = useState("");
  const [again, setAgain] = useState("");
  const [bucket, setBucket] = useState("");
  const [prefix, setPrefix] = useState("");
  const [readOnly, setReadOnly] = useState(false);
  const [grant, setGrant] = useState<string | null>(null);
  useEffect(() => {
    call<SatelliteInfo>("GET", "/satellite")
      .then(setSatellite)
      .catch((e: Error) => setError(e.message));
  }, []);
  const where = bucket ? `orbit://${bucket}` : "orbit://my-bucket";
  return (
    <section aria-labelledby="access-h">
      <h2 id="access-h">Access grants</h2>
      <p>
        A grant holds the satellite's address and key, an API key, and the encryption key derived from your
        passphrase. It is made in this page: the passphrase and the encryption key never leave it.
      </p>
      <Notice error={error} />
      <Form
        label="New access grant"
        submit="Make access grant"
        action={async () => {
          if (!satellite) throw new Error("the satellite's address is not known yet; try again");
          if (passphrase !== again) throw new Error("the two passphrases differ");
          if (prefix && !bucket) throw new Error("a key prefix needs its bucket");
          const made = parseGrant(await makeGrant(satellite.url, satellite.key, apiKey, passphrase));
          const caveats: Caveat[] = [];
          if (readOnly) caveats.push({ kind: "read-only" });
          if (bucket) caveats.push({ kind: "prefix", bucket, prefix });
          const g = caveats.length ? await restrictGrant(made, caveats) : made;
          setGrant(serializeGrant(g));
          held.setGrant(g);
          held.setNewKey("");
          setPassphrase("");
          setAgain("");
          return "Made. It also stays in this page (until you reload it) for the Buckets tab.";
        }}
      >
        <div className="field">
          <label htmlFor="grant-key">API key</label>
          <textarea id="grant-key" rows={2} value={apiKey} required onChange={(e) => setApiKey(e.target.value)} />
        </div>
        <Field label="Passphrase" type="password" value={passphrase} onChange={setPassphrase} required autoComplete="off" hint="It encrypts your object keys and data; the satellite never sees it. Lose it and the data cannot be read." />
        <Field label="Passphrase again" type="password" value={again} onChange={setAgain} required autoComplete="off" />
        <fieldset>
          <legend>Narrow the grant (optional)</legend>
          <Check label="Read-only" checked={readOnly} onChange={setReadOnly} />
          <Field label="Only bucket" value={bucket} onChange={setBucket} />
          <Field label="Only keys starting with" value={prefix} onChange={setPrefix} hint="For example photos/ — encrypted here before it goes into the key." />
        </fieldset>
      </Form>
      {grant && (
        <div className="made">
          <Secret label="Access grant" value={grant} />
          <Secret
            label="Command line"
            value={`export ORBIT_ACCESS=${grant}\nuplink mb ${where}\nuplink cp ./file.txt ${where}/${prefix}file.txt\nuplink ls ${where}`}
          />
          <button type="button" onClick={() => navigate(`/projects/${project.id}/buckets`)}>
            Browse buckets with it
          </button>
        </div>
      )}
    </section>
  );
}

interface Row {
  key: string;
  size: string;
  created: number;
}

function BucketsTab({ project, held }: { project: Project; held: Held }) {
  const [buckets, setBuckets] = useState<string[] | null>(null);
  const [open, setOpen] = useState<string | null>(null);
  const [rows, setRows] = useState<Row[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [pasted, setPasted] = useState("");
  useEffect(() => {
    call<{ buckets: string[] }>("GET", `/projects/${project.id}/buckets`)
      .then((r) => setBuckets(r.buckets))
      .catch((e: Error) => setError(e.message));
  }, [project.id]);
  const list = async (bucket: string) => {
    setOpen(bucket);
    setRows(null);
    setError(null);
    const g = held.grant;
    if (!g) return;
    try {
      const all: ListedObject[] = [];
      let cursor = "";
      for (;;) {
        const q = `cursor=${encodeURIComponent(cursor)}`;
        const r = await call<{ objects: ListedObject[]; more: boolean }>(
          "GET",
          `/projects/${project.id}/buckets/${encodeURIComponent(bucket)}/objects?${q}`,
        );
        all.push(...r.objects);
        if (!r.more || r.objects.length === 0) break;
        cursor = r.objects[r.objects.length - 1].key;
      }
      setRows(
        await Promise.all(
          all.map(async (o) => {
            try {
              const key = await decryptPath(g.root, bucket, o.key);
              const meta = await openMeta(g.root, bucket, o.key, fromHex(o.metadata, "metadata"));
              return { key, size: bytes(meta.size), created: o.created };
            } catch {
              return { key: "(cannot decrypt with this grant)", size: "?", created: o.created };
            }
          }),
        ),
      );
    } catch (e) {
      setError((e as Error).message);
    }
  };
  return (
    <section aria-labelledby="buckets-h">
      <h2 id="buckets-h">Buckets</h2>
      <Notice error={error} />
      {!held.grant && (
        <Form
          label="Use an access grant"
          submit="Use grant"
          action={async () => {
            held.setGrant(parseGrant(pasted));
            setPasted("");
          }}
        >
          <p>
            Object names are encrypted: paste an access grant of this project to read them (it stays in this page
            only), or <Link to={`/projects/${project.id}/access`}>make one</Link>.
          </p>
          <div className="field">
            <label htmlFor="paste-grant">Access grant</label>
            <textarea id="paste-grant" rows={2} value={pasted} required onChange={(e) => setPasted(e.target.value)} />
          </div>
        </Form>
      )}
      {held.grant && (
        <p className="row">
          Reading with the grant held in this page.
          <button type="button" onClick={() => held.setGrant(null)}>
            Forget grant
          </button>
        </p>
      )}
      {buckets && buckets.length === 0 && <p>No buckets yet.</p>}
      {buckets && buckets.length > 0 && (
        <ul className="cards" aria-label="Buckets">
          {buckets.map((b) => (
            <li key={b}>
              <button type="button" onClick={() => list(b)} disabled={!held.grant} aria-pressed={open === b}>
                {b}
              </button>
            </li>
          ))}
        </ul>
      )}
      {open && rows && (
        <table className="list" aria-label={`Objects in ${open}`}>
          <thead>
            <tr>
              <th scope="col">Key</th>
              <th scope="col">Size</th>
              <th scope="col">Uploaded</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((r, i) => (
              <tr key={i}>
                <td>{r.key}</td>
                <td>{r.size}</td>
                <td>{time(r.created)}</td>
              </tr>
            ))}
            {rows.length === 0 && (
              <tr>
                <td colSpan={3}>No objects.</td>
              </tr>
            )}
          </tbody>
        </table>
      )}
    </section>
  );
}

function SettingsTab({ project, onRenamed }: { project: Project; onRenamed: (p: Project) => void }) {
  const [name, setName] = useState(project.name);
  const [sure, setSure] = useState(false);
  return (
    <section aria-labelledby="settings-h">
      <h2 id="settings-h">Settings</h2>
      <Form
        label="Rename project"
        submit="Rename"
        action={async () => {
          onRenamed(await call<Project>("PATCH", `/projects/${project.id}`, { name }));
          return "Renamed.";
        }}
      >
        <Field label="Project name" value={name} onChange={setName} required maxLength={64} />
      </Form>
      <h3>Delete project</h3>
      <p>Only an empty project can go: delete its buckets first. Its API keys are revoked with it.</p>
      <Form
        label="Delete project"
        submit="Delete project"
        danger
        action={async () => {
          if (!sure) throw new Error("tick the box to confirm");
          await call("DELETE", `/projects/${project.id}`);
          navigate("/", true);
        }}
      >
        <Check label={`Yes, delete ${project.name}`} checked={sure} onChange={setSure} />
      </Form>
    </section>
  );
}
