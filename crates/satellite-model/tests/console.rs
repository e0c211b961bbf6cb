//! The console's model on a real store member: accounts, confirmation, sessions,
//! the login limit, password change and reset, projects and their API keys — and
//! what a hostile or careless caller gets.

use orbit_kv::{Kv, PutRequest};
use orbit_protocol::apikey::Caveat;
use orbit_satellite_model::apikeys::{ApiKeys, Op};
use orbit_satellite_model::console::{Console, Rules};
use orbit_satellite_model::keys::{self, Bucket, Project};
use orbit_satellite_model::Error;
use orbit_testkit::{OrbitCluster, Timings};
use std::sync::Arc;

const NOW: u64 = 1_800_000_000;
const PASSWORD: &str = "correct horse battery";

async fn console() -> (OrbitCluster, Console, Arc<dyn Kv>) {
    let c = OrbitCluster::start(1, Timings::FAST).await;
    let kv: Arc<dyn Kv> = Arc::new(c.embedded(0));
    (c, Console::new(kv.clone(), Rules::default()), kv)
}

/// A confirmed account; its id.
async fn account(console: &Console, email: &str) -> String {
    let (a, token) = console.sign_up(email, PASSWORD, NOW).await.unwrap();
    console.confirm(&token, NOW).await.unwrap();
    a.id
}

#[tokio::test]
async fn sign_up_confirm_log_in_and_out() {
    let (_c, console, _) = console().await;
    let (a, token) = console
        .sign_up(" Ada@Example.org ", PASSWORD, NOW)
        .await
        .unwrap();
    assert_eq!(a.email, "Ada@Example.org");
    assert!(a.password.starts_with("$argon2id$"), "{}", a.password);
    assert!(!a.password.contains(PASSWORD));
    // Not before the email is confirmed.
    let e = console
        .log_in("ada@example.org", PASSWORD, NOW)
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Forbidden(_)) && e.to_string().contains("confirm"),
        "{e}"
    );
    // The same email again, in another case: refused.
    let e = console
        .sign_up("ADA@example.org", PASSWORD, NOW)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Exists(_)), "{e}");
    console.confirm(&token, NOW).await.unwrap();
    // A token works once.
    assert!(console.confirm(&token, NOW).await.is_err());

    let s = console
        .log_in("ADA@example.org", PASSWORD, NOW)
        .await
        .unwrap();
    let (session, who) = console.session(&s.cookie, NOW + 60).await.unwrap();
    assert_eq!(who.id, a.id);
    assert_eq!(session.csrf, s.csrf);
    assert_eq!(s.csrf.len(), 64);
    // Past its end, the session is gone even before its lease expires.
    let e = console.session(&s.cookie, s.expires).await.unwrap_err();
    assert!(e.to_string().contains("session has ended"), "{e}");
    console.log_out(&s.cookie).await.unwrap();
    assert!(console.session(&s.cookie, NOW + 60).await.is_err());
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_nothing_else() {
    let (_c, console, _) = console().await;
    for email in [
        "",
        "no-at-sign",
        "a@b",
        "a b@example.org",
        "a@@example.org",
        "a@.org",
    ] {
        let e = console.sign_up(email, PASSWORD, NOW).await.unwrap_err();
        assert!(
            e.to_string().contains("not an email address"),
            "{email:?}: {e}"
        );
    }
    let e = console
        .sign_up("x@example.org", "short", NOW)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("10 to 1024"), "{e}");
    // Cookies that are no session, or try to reach into other keys.
    for cookie in [
        "",
        "x",
        "../../accounts/x.y",
        "ABCDEF.y",
        &format!("{}.y", "0".repeat(32)),
    ] {
        let e = console.session(cookie, NOW).await.unwrap_err();
        assert!(matches!(e, Error::Unauthenticated(_)), "{cookie:?}: {e}");
    }
    // A made-up confirmation token.
    assert!(console.confirm(&"ab".repeat(32), NOW).await.is_err());
}

#[tokio::test]
async fn failed_logins_are_limited_per_email_and_say_so() {
    let (_c, console, _) = console().await;
    account(&console, "bob@example.org").await;
    // A wrong password and an unknown email get the same answer.
    let wrong = console
        .log_in("bob@example.org", "not the password", NOW)
        .await
        .unwrap_err();
    let unknown = console
        .log_in("nobody@example.org", PASSWORD, NOW)
        .await
        .unwrap_err();
    assert_eq!(wrong.to_string(), unknown.to_string());
    assert_eq!(wrong.to_string(), "wrong email or password");
    for _ in 1..Rules::default().login_failures {
        assert!(console
            .log_in("bob@example.org", "nope nope nope", NOW)
            .await
            .is_err());
    }
    // Now even the right password is refused, with when to come back.
    let e = console
        .log_in("bob@example.org", PASSWORD, NOW + 1)
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::LimitExceeded(_)) && e.to_string().contains("try again in 15 minutes"),
        "{e}"
    );
    // After the window, the right password works again.
    let later = NOW + Rules::default().login_window_s as u64 + 1;
    console
        .log_in("bob@example.org", PASSWORD, later)
        .await
        .unwrap();
}

#[tokio::test]
async fn password_change_and_reset_end_every_session() {
    let (_c, console, _) = console().await;
    let id = account(&console, "cy@example.org").await;
    let a = console
        .log_in("cy@example.org", PASSWORD, NOW)
        .await
        .unwrap();
    let b = console
        .log_in("cy@example.org", PASSWORD, NOW)
        .await
        .unwrap();
    let e = console
        .change_password(&id, "not it at all", "a new long password", NOW)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("current password is wrong"), "{e}");
    assert!(console.session(&a.cookie, NOW).await.is_ok());
    let c = console
        .change_password(&id, PASSWORD, "a new long password", NOW)
        .await
        .unwrap();
    assert!(console.session(&a.cookie, NOW).await.is_err());
    assert!(console.session(&b.cookie, NOW).await.is_err());
    assert!(console.session(&c.cookie, NOW).await.is_ok());
    assert!(console
        .log_in("cy@example.org", PASSWORD, NOW)
        .await
        .is_err());

    // A reset: nothing for an unknown email; a token that works once.
    assert!(console
        .request_reset("nobody@example.org", NOW)
        .await
        .unwrap()
        .is_none());
    let (_, token) = console
        .request_reset("CY@example.org", NOW)
        .await
        .unwrap()
        .unwrap();
    console
        .reset_password(&token, "the third password", NOW)
        .await
        .unwrap();
    assert!(console.session(&c.cookie, NOW).await.is_err());
    assert!(console
        .reset_password(&token, "a fourth password", NOW)
        .await
        .is_err());
    console
        .log_in("cy@example.org", "the third password", NOW)
        .await
        .unwrap();
    // A confirmation token is no reset token.
    let (_, confirm) = console
        .sign_up("dee@example.org", PASSWORD, NOW)
        .await
        .unwrap();
    assert!(console
        .reset_password(&confirm, "sneaky password", NOW)
        .await
        .is_err());
}

#[tokio::test]
async fn projects_belong_to_their_owner_and_go_only_when_empty() {
    let (_c, console, kv) = console().await;
    let ada = account(&console, "ada@example.org").await;
    let eve = account(&console, "eve@example.org").await;
    let p = console
        .create_project(&ada, "<script>alert(1)</script>", NOW)
        .await
        .unwrap();
    // Stored as given: escaping is the page's job, and the id is the model's.
    assert_eq!(p.name, "<script>alert(1)</script>");
    Project::new(&p.id).unwrap();
    assert_eq!(console.projects(&ada).await.unwrap(), vec![p.clone()]);
    assert!(console.projects(&eve).await.unwrap().is_empty());
    // Another account's project id is not found, for every operation.
    assert!(matches!(
        console.project(&eve, &p.id).await.unwrap_err(),
        Error::NotFound(_)
    ));
    assert!(console.rename_project(&eve, &p.id, "mine").await.is_err());
    assert!(console.delete_project(&eve, &p.id, NOW).await.is_err());
    assert!(console
        .create_key(&eve, &p.id, "k", vec![], NOW)
        .await
        .is_err());
    assert!(console.api_keys(&eve, &p.id).await.is_err());
    assert!(console.project(&ada, "../x").await.is_err());

    let renamed = console.rename_project(&ada, &p.id, "Photos").await.unwrap();
    assert_eq!(renamed.name, "Photos");
    for bad in ["", "   ", &"x".repeat(65), "a\u{0}b"] {
        assert!(
            console.rename_project(&ada, &p.id, bad).await.is_err(),
            "{bad:?}"
        );
    }
    // Not while it holds a bucket.
    let project = Project::new(&p.id).unwrap();
    let bucket = keys::bucket(&project, &Bucket::new("holiday").unwrap());
    kv.put(PutRequest::new(bucket.clone(), "x")).await.unwrap();
    let e = console.delete_project(&ada, &p.id, NOW).await.unwrap_err();
    assert!(e.to_string().contains("still has buckets"), "{e}");
    kv.delete(orbit_kv::DeleteRequest::key(bucket))
        .await
        .unwrap();
    console.delete_project(&ada, &p.id, NOW).await.unwrap();
    assert!(console.projects(&ada).await.unwrap().is_empty());
    // At most the limit.
    for i in 0..Rules::default().max_projects {
        console
            .create_project(&ada, &format!("p{i}"), NOW)
            .await
            .unwrap();
    }
    let e = console
        .create_project(&ada, "one more", NOW)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::LimitExceeded(_)), "{e}");
}

#[tokio::test]
async fn keys_carry_their_caveats_and_revoking_one_revokes_its_restrictions() {
    let (_c, console, kv) = console().await;
    let ada = account(&console, "ada@example.org").await;
    let p = console.create_project(&ada, "main", NOW).await.unwrap();
    let (ro, ro_key) = console
        .create_key(&ada, &p.id, "reader", vec![Caveat::ReadOnly], NOW)
        .await
        .unwrap();
    let (full, full_key) = console
        .create_key(&ada, &p.id, "writer", vec![], NOW + 1)
        .await
        .unwrap();
    let keys = ApiKeys::new(kv.clone());
    let check = |key: String, op| {
        let keys = keys.clone();
        async move { keys.check(&key, op, Some("bkt"), None, NOW).await }
    };
    assert_eq!(check(ro_key.clone(), Op::Read).await.unwrap(), p.id);
    assert!(check(ro_key.clone(), Op::Write)
        .await
        .unwrap_err()
        .to_string()
        .contains("read-only"));
    assert_eq!(check(full_key.clone(), Op::Write).await.unwrap(), p.id);
    let listed = console.api_keys(&ada, &p.id).await.unwrap();
    assert_eq!(listed, vec![ro.clone(), full.clone()]);
    assert!(
        !listed.iter().any(|k| format!("{k:?}").contains(&full_key)),
        "a listing shows a secret"
    );

    // A restriction the user made of the full key is revoked with it.
    let narrowed = orbit_protocol::apikey::ApiKey::parse(&full_key)
        .unwrap()
        .restrict(Caveat::ReadOnly)
        .serialize();
    assert!(check(narrowed.clone(), Op::Read).await.is_ok());
    let revoked = console
        .revoke_key(&ada, &p.id, &full.head, NOW)
        .await
        .unwrap();
    assert_eq!(revoked.revoked, Some(NOW));
    let fresh = ApiKeys::new(kv.clone());
    for k in [&full_key, &narrowed] {
        let e = fresh
            .check(k, Op::Read, Some("bkt"), None, NOW)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("revoked"), "{e}");
    }
    assert!(check(ro_key, Op::Read).await.is_ok());
    assert!(console.revoke_key(&ada, &p.id, "zz", NOW).await.is_err());
    // A bucket caveat must name a valid bucket.
    let bad = Caveat::Prefix {
        bucket: "../x".into(),
        prefix: String::new(),
    };
    assert!(console
        .create_key(&ada, &p.id, "k", vec![bad], NOW)
        .await
        .is_err());
}

#[tokio::test]
async fn a_linked_wallet_shows_its_balance_and_channels() {
    use orbit_payments::{Escrow, Op, SignedOp, Wallet};
    let (_c, console, kv) = console().await;
    let id = account(&console, "pay@example.org").await;
    let escrow = Escrow::new(kv.clone(), Wallet::random().address());
    let (me, operator) = (Wallet::random(), Wallet::random());
    let (_, a) = console
        .session(
            &console
                .log_in("pay@example.org", PASSWORD, NOW)
                .await
                .unwrap()
                .cookie,
            NOW,
        )
        .await
        .unwrap();
    assert!(console.billing(&a, &escrow).await.unwrap().is_none());
    for bad in [
        "",
        "0x12",
        "not an address",
        "0xzz00000000000000000000000000000000000000",
    ] {
        let e = console.set_wallet(&id, Some(bad)).await.unwrap_err();
        assert!(e.to_string().contains("wallet address"), "{bad:?}: {e}");
    }
    let a = console
        .set_wallet(&id, Some(&me.address().to_string()))
        .await
        .unwrap();
    escrow.deposit(&me.address(), 1000).await.unwrap();
    let open = Op::Open {
        signer: me.address(),
        recipient: operator.address(),
        group_id: [7; 32],
        value: 400,
        expiration: NOW + 3600,
    };
    let (_, ch) = escrow
        .apply(&SignedOp::sign(&me, &escrow.address(), open, 0), NOW)
        .await
        .unwrap();
    let b = console.billing(&a, &escrow).await.unwrap().unwrap();
    assert_eq!((b.balance, b.channels.len()), (600, 1));
    assert_eq!(b.channels[0], ch.unwrap());
    assert_eq!(b.wallet, me.address().to_string());
    let a = console.set_wallet(&id, None).await.unwrap();
    assert!(console.billing(&a, &escrow).await.unwrap().is_none());
}
