// The console: who is logged in, which page the path names, and the header.

import { useEffect, useState } from "react";
import type { Grant } from "./access";
import { ApiError, call, setCsrf, whenSessionEnds, type Me } from "./api";
import { Account } from "./pages/account";
import { Confirm, LogIn, Reset, ResetRequest, SignUp } from "./pages/auth";
import { ProjectPage } from "./pages/project";
import { Projects } from "./pages/projects";
import { navigate, useLocation } from "./route";
import { Link, Notice } from "./ui";

export function App() {
  const url = useLocation();
  const [me, setMe] = useState<Me | null | undefined>(undefined);
  const [notice, setNotice] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [grant, setGrant] = useState<Grant | null>(null);
  const [newKey, setNewKey] = useState("");
  const session = (m: Me | null) => {
    setCsrf(m?.csrf ?? "");
    setMe(m);
    if (!m) {
      // Nothing of the last session stays in the page.
      setGrant(null);
      setNewKey("");
    }
  };
  useEffect(() => {
    whenSessionEnds(() => {
      session(null);
      setNotice("Your session has ended: log in again.");
    });
    call<Me>("GET", "/me")
      .then(session)
      .catch((e) => {
        if (e instanceof ApiError && e.status === 401) session(null);
        else setError((e as Error).message);
      });
  }, []);
  const path = url.pathname;
  const token = url.searchParams.get("token") ?? "";
  // Pages anyone may open, logged in or not.
  if (path === "/confirm") return <Shell me={me} onLogOut={() => session(null)}><Confirm token={token} /></Shell>;
  if (path === "/reset") return <Shell me={me} onLogOut={() => session(null)}><Reset token={token} /></Shell>;
  if (me === undefined) {
    return (
      <Shell me={me} onLogOut={() => session(null)}>
        <main aria-busy="true">
          <Notice error={error} />
          {!error && <p role="status">Loading…</p>}
        </main>
      </Shell>
    );
  }
  let page;
  if (!me) {
    if (path === "/signup") page = <SignUp />;
    else if (path === "/reset/request") page = <ResetRequest />;
    else {
      page = (
        <LogIn
          notice={notice ?? (url.searchParams.get("reset") ? "Your password is set: log in with it." : null)}
          onLogIn={(m) => {
            session(m);
            setNotice(null);
            navigate(path === "/login" || path === "/signup" ? "/" : path + url.search, true);
          }}
        />
      );
    }
  } else {
    const parts = path.split("/").filter(Boolean);
    if (parts[0] === "projects" && parts[1]) {
      page = (
        <ProjectPage
          id={decodeURIComponent(parts[1])}
          tab={parts[2] ?? "usage"}
          held={{ grant, setGrant, newKey, setNewKey }}
        />
      );
    } else if (path === "/account") {
      page = <Account me={me} onSession={session} />;
    } else {
      page = <Projects />;
    }
  }
  return (
    <Shell me={me} onLogOut={() => session(null)}>
      {page}
    </Shell>
  );
}

function Shell(props: { me: Me | null | undefined; onLogOut: () => void; children: React.ReactNode }) {
  return (
    <>
      <a className="skip" href="#content">
        Skip to content
      </a>
      <header>
        <Link to="/">
          <span className="brand">orbit</span>
        </Link>
        {props.me && (
          <nav aria-label="Account">
            <Link to="/">Projects</Link>
            <Link to="/account">Account</Link>
            <button
              type="button"
              onClick={async () => {
                try {
                  await call("POST", "/logout");
                } finally {
                  props.onLogOut();
                  navigate("/login", true);
                }
              }}
            >
              Log out
            </button>
          </nav>
        )}
      </header>
      <div id="content" tabIndex={-1}>
        {props.children}
      </div>
    </>
  );
}
