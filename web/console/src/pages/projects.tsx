// The account's projects: the list and a new one.

import { useEffect, useState } from "react";
import { call, type Project, type SatelliteInfo } from "../api";
import { time } from "../format";
import { navigate } from "../route";
import { Field, Form, Link, Notice } from "../ui";

export function Projects() {
  const [projects, setProjects] = useState<Project[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [name, setName] = useState("");
  const [max, setMax] = useState<number | null>(null);
  useEffect(() => {
    call<SatelliteInfo>("GET", "/satellite")
      .then((s) => setMax(s.max_projects))
      .catch(() => setMax(null));
    call<{ projects: Project[] }>("GET", "/projects")
      .then((r) => setProjects(r.projects))
      .catch((e: Error) => setError(e.message));
  }, []);
  return (
    <main>
      <h1>Projects</h1>
      <Notice error={error} />
      {projects === null && !error && <p role="status">Loading…</p>}
      {projects && projects.length === 0 && <p>No projects yet: create one below.</p>}
      {projects && projects.length > 0 && (
        <ul className="cards" aria-label="Your projects">
          {projects.map((p) => (
            <li key={p.id}>
              <Link to={`/projects/${p.id}`}>{p.name}</Link>
              <small>
                {p.id} · made {time(p.created)}
              </small>
            </li>
          ))}
        </ul>
      )}
      <section aria-labelledby="new-project">
        <h2 id="new-project">New project</h2>
        {projects && max !== null && (
          <p className="hint" data-testid="project-limit">
            {projects.length} of {max} projects.
          </p>
        )}
        <Form
          label="New project"
          submit="Create project"
          action={async () => {
            const p = await call<Project>("POST", "/projects", { name });
            navigate(`/projects/${p.id}`);
          }}
        >
          <Field label="Project name" value={name} onChange={setName} required maxLength={64} hint="1 to 64 characters." />
        </Form>
      </section>
    </main>
  );
}
