//! Connections: request metadata, slab ids with generations, names, metadata, limits.

use crate::common::Sim;
use serde_json::json;
use tidings_core::{CloseCode, Config, ConnId, ConnectionInfo, Error, Event, NameConflict};

#[test]
fn open_keeps_request_metadata_and_greets_the_client() {
    let mut sim = Sim::new(Config::default().ping_period(None));
    let addr = "127.0.0.1:5000".parse().expect("addr");
    let conn = sim.open(
        ConnectionInfo::new("/ws/user123/notification")
            .query("user_id=user%20123")
            .remote(addr)
            .header("Origin", "https://app.example"),
    );
    let info = sim.hub.info(conn).expect("info");
    assert_eq!(info.path, "/ws/user123/notification");
    assert_eq!(info.remote, Some(addr));
    assert_eq!(info.header_value("origin"), Some("https://app.example"));
    assert_eq!(info.query_param("user_id").as_deref(), Some("user 123"));
    assert_eq!(sim.take_events(), vec![Event::Connected { conn }]);
    let welcome = &sim.json(conn)[0];
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["version"], 1);
    assert_eq!(welcome["conn"], conn.to_string());
}

#[test]
fn the_hub_keeps_its_config() {
    let sim = Sim::new(Sim::quiet().max_queue_frames(7));
    assert_eq!(sim.hub.config().max_queue_frames, 7);
}

#[test]
fn names_are_unique_and_looked_up() {
    let mut sim = Sim::new(Sim::quiet());
    let a = sim.open(ConnectionInfo::new("/ws/a").name("/ws/a"));
    let b = sim.open(ConnectionInfo::new("/ws/b").name("/ws/b"));
    let _anon = sim.open_path("/ws");
    assert_eq!(sim.hub.by_name("/ws/a"), Some(a));
    assert!(sim.hub.exists("/ws/b"));
    assert!(!sim.hub.exists("/ws/c"));
    assert_eq!(sim.hub.names().collect::<Vec<_>>(), vec!["/ws/a", "/ws/b"]);
    assert_eq!(sim.hub.connection_count(), 3);
    assert!(sim.hub.is_connected(b));
    sim.hub
        .close(sim.now, b, CloseCode::NORMAL, "bye")
        .expect("close");
    sim.drain();
    assert!(!sim.hub.is_connected(b));
    assert!(!sim.hub.exists("/ws/b"));
    assert_eq!(sim.hub.connection_count(), 2);
}

#[test]
fn a_reused_name_replaces_the_stale_connection_by_default() {
    let mut sim = Sim::new(Sim::quiet());
    let old = sim.open(ConnectionInfo::new("/ws/u1").name("u1"));
    let new = sim.open(ConnectionInfo::new("/ws/u1").name("u1"));
    assert_eq!(
        sim.close_of(old),
        Some((CloseCode::REPLACED, "replaced by a newer connection".into()))
    );
    assert_eq!(sim.hub.by_name("u1"), Some(new));
    assert!(!sim.hub.is_connected(old));
}

#[test]
fn a_reused_name_is_refused_under_the_refuse_policy() {
    let mut sim = Sim::new(Sim::quiet().name_conflict(NameConflict::Refuse));
    let first = sim.open(ConnectionInfo::new("/ws").name("u1"));
    let err = sim.hub.open(sim.now, ConnectionInfo::new("/ws").name("u1"));
    assert_eq!(err, Err(Error::NameTaken("u1".into())));
    assert_eq!(sim.hub.by_name("u1"), Some(first));
    assert_eq!(sim.hub.counters().connections_refused, 1);
}

#[test]
fn max_connections_refuses_with_a_reason() {
    let mut sim = Sim::new(Sim::quiet().max_connections(2));
    let a = sim.open_path("/");
    sim.open_path("/");
    let err = sim
        .hub
        .open(sim.now, ConnectionInfo::new("/"))
        .expect_err("full");
    assert_eq!(err, Error::TooManyConnections { limit: 2 });
    assert!(err.to_string().contains("limit 2"));
    // A slot frees when a connection goes.
    sim.hub
        .close(sim.now, a, CloseCode::NORMAL, "")
        .expect("close");
    sim.drain();
    sim.open_path("/");
}

#[test]
fn stale_ids_never_reach_a_newer_connection_in_the_same_slot() {
    let mut sim = Sim::new(Sim::quiet());
    let old = sim.open_path("/");
    sim.hub
        .close(sim.now, old, CloseCode::NORMAL, "")
        .expect("close");
    sim.drain();
    let new = sim.open_path("/");
    assert_ne!(old, new);
    assert!(!sim.hub.is_connected(old));
    assert_eq!(
        sim.hub
            .emit(sim.now, old, tidings_core::Message::text("x", "y")),
        Err(Error::UnknownConnection(old))
    );
    assert!(sim.hub.info(old).is_none());
    assert_eq!(ConnId::from_u64(new.to_u64()), new);
}

#[test]
fn metadata_set_get_remove() {
    let mut sim = Sim::new(Sim::quiet());
    let c = sim.open_path("/");
    assert_eq!(sim.hub.set_meta(c, "user", json!({"id": 7})), Ok(None));
    assert_eq!(
        sim.hub.set_meta(c, "user", json!({"id": 8})),
        Ok(Some(json!({"id": 7})))
    );
    assert_eq!(sim.hub.meta(c, "user"), Some(&json!({"id": 8})));
    assert_eq!(sim.hub.remove_meta(c, "user"), Some(json!({"id": 8})));
    assert_eq!(sim.hub.meta(c, "user"), None);
    sim.hub
        .close(sim.now, c, CloseCode::NORMAL, "")
        .expect("close");
    sim.drain();
    assert_eq!(
        sim.hub.set_meta(c, "k", json!(1)),
        Err(Error::UnknownConnection(c))
    );
}

#[test]
fn namespaces_must_be_valid() {
    let mut sim = Sim::new(Sim::quiet());
    for ns in ["chat", "", "/a\u{0}b"] {
        let err = sim
            .hub
            .open(sim.now, ConnectionInfo::new("/").namespace(ns))
            .expect_err(ns);
        assert!(
            matches!(
                err,
                Error::InvalidName {
                    what: "namespace",
                    ..
                }
            ),
            "{ns:?}: {err}"
        );
    }
    sim.open(ConnectionInfo::new("/").namespace("/chat"));
}

#[test]
fn unauthenticated_connections_close_with_4005_at_the_deadline() {
    use std::time::Duration;
    let limit = Duration::from_secs(3);
    let mut sim = Sim::new(Sim::quiet().auth_timeout(Some(limit)));
    let (idle, known) = (sim.open_path("/"), sim.open_path("/"));
    assert!(!sim.hub.is_authenticated(idle));
    sim.hub.authenticate(known).expect("open");
    sim.hub.authenticate(known).expect("twice is fine");
    assert!(sim.hub.is_authenticated(known));
    sim.advance(limit - Duration::from_millis(1));
    assert!(sim.hub.is_connected(idle), "not before the deadline");
    sim.advance(Duration::from_millis(1));
    let (code, reason) = sim.close_of(idle).expect("closed at the deadline");
    assert_eq!(code, CloseCode::AUTH_TIMEOUT);
    assert!(reason.contains("3000 ms"), "{reason}");
    assert!(sim.close_of(known).is_none(), "authenticated in time");
    sim.advance(limit * 10);
    assert!(sim.hub.is_connected(known));
    assert_eq!(
        sim.hub.authenticate(idle),
        Err(Error::UnknownConnection(idle))
    );
}

#[test]
fn without_an_auth_timeout_everyone_counts_as_authenticated() {
    let mut sim = Sim::new(Sim::quiet());
    let c = sim.open_path("/");
    assert!(sim.hub.is_authenticated(c));
    assert_eq!(sim.hub.poll_timeout(), None, "no deadline is armed");
    assert!(Config::default()
        .auth_timeout(Some(std::time::Duration::ZERO))
        .validate()
        .is_err());
}
