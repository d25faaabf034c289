//! The admin-API path mapping of the `crud` and `dao:crud` sources: a method, a path, a status
//! and a prefix to an entity write, then the write and a response body to its events.
//!
//! Beyond "no panic", the table of docs/src/sources/crud.md:
//! * only a 2xx answer to POST, PUT, PATCH or DELETE is a write; POST creates, PATCH
//!   updates, DELETE deletes, PUT creates when answered 201 and updates otherwise;
//! * the schema is the last collection of the path under the prefix, a valid schema name (so
//!   its `crud` events are valid event names); the id is the last segment, POST has none;
//! * a query never changes the mapping;
//! * a write emits Kong's three events (`<schema>`, `<schema>:<op>`, `<op>`), whose data has
//!   the entity exactly when the body is JSON (or, for a delete without a body, the path's id).
#![no_main]

use arbitrary::Unstructured;
use event_hooks_core::reader::Problems;
use event_hooks_core::source::Source;
use event_hooks_core::source::crud::{self, Body, Missing, Operation};
use event_hooks_fuzz::{chance, count, free_text, pick};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

const SEGMENTS: &[&str] = &[
    "consumers",
    "services",
    "routes",
    "plugins",
    "s1",
    "bob",
    "",
    "a b",
    "é",
    "plugins.json",
    "..",
    "%2F",
    "x:y",
    "UPPER",
    "snake_case",
    "kebab-case",
];

fn path(u: &mut Unstructured<'_>, prefix: &str) -> String {
    if chance(u, 1, 6) {
        return free_text(u, 64);
    }
    let mut path = if chance(u, 3, 4) {
        prefix.to_string()
    } else {
        "/".to_string()
    };
    let segments: Vec<String> = (0..count(u, 5))
        .map(|_| {
            if chance(u, 1, 8) {
                free_text(u, 10)
            } else {
                pick(u, SEGMENTS).to_string()
            }
        })
        .collect();
    path.push_str(&segments.join(if chance(u, 1, 8) { "//" } else { "/" }));
    if chance(u, 1, 4) {
        path.push('/');
    }
    path
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let prefix = match count(&mut u, 3) {
        0 => "/".to_string(),
        1 => free_text(&mut u, 12),
        _ => {
            // As the configuration normalizes it.
            let given = pick(&mut u, &["/admin", "/admin/", "/a/b", "admin", "//", "/é"]);
            let problems = Problems::default();
            let settings = crud::Settings::parse(
                &json!({"match": {"upstream.cluster": "kong_admin"}, "prefix": given}),
                "crud",
                &problems,
            );
            match settings {
                Some(settings) if problems.is_empty() => {
                    assert!(settings.prefix.starts_with('/') && settings.prefix.ends_with('/'));
                    settings.prefix
                }
                _ => return,
            }
        }
    };
    let method = if chance(&mut u, 1, 8) {
        free_text(&mut u, 8)
    } else {
        pick(
            &mut u,
            &["POST", "PUT", "PATCH", "DELETE", "GET", "HEAD", "post"],
        )
        .to_string()
    };
    let status: u64 = match count(&mut u, 4) {
        0 => u.arbitrary().unwrap_or(0),
        1 => 201,
        2 => 204,
        3 => 200,
        _ => pick(&mut u, &[199, 299, 300, 404, 0]),
    };
    let path = path(&mut u, &prefix);

    let Some(write) = crud::map(&method, &path, status, &prefix) else {
        return;
    };
    assert!(
        (200..300).contains(&status),
        "a {status} answer made a write"
    );
    assert!(crud::is_write_method(&method), "{method} made a write");
    let expected = match method.as_str() {
        "POST" => Operation::Create,
        "PUT" if status == 201 => Operation::Create,
        "PUT" | "PATCH" => Operation::Update,
        _ => Operation::Delete,
    };
    assert_eq!(write.operation, expected, "{method} {path} {status}");
    assert_eq!(
        write.id.is_none(),
        method == "POST",
        "POST has no id, the others one"
    );
    let crud_name = format!("{}:{}", write.schema, write.operation.name());
    assert!(
        crud::crud_spec(&write.schema).is_some(),
        "schema {:?} is no event name",
        write.schema
    );
    assert!(
        crud::crud_spec(&crud_name).is_some(),
        "{crud_name:?} is no event name"
    );
    let bare = path.split_once('?').map_or(path.as_str(), |(bare, _)| bare);
    let under = bare
        .strip_prefix(prefix.as_str())
        .expect("a write's path is under the prefix");
    let segments: Vec<&str> = under.split('/').filter(|s| !s.is_empty()).collect();
    let (schema_at, id_at) = match write.id {
        None => (segments.len().checked_sub(1), None),
        Some(_) => (segments.len().checked_sub(2), segments.len().checked_sub(1)),
    };
    assert_eq!(
        schema_at.map(|at| segments[at]),
        Some(write.schema.as_str()),
        "schema of {path}"
    );
    assert_eq!(
        id_at.map(|at| segments[at]),
        write.id.as_deref(),
        "id of {path}"
    );
    if !path.contains('?') {
        let query = free_text(&mut u, 16);
        assert_eq!(
            crud::map(&method, &format!("{path}?{query}"), status, &prefix),
            Some(write.clone()),
            "a query changed the mapping of {path}"
        );
    }

    let body = match count(&mut u, 3) {
        0 => Body::Empty,
        1 => Body::TooLarge,
        2 => Body::Complete(free_text(&mut u, 128).into_bytes()),
        _ => Body::Complete(
            json!({"id": "x", "username": free_text(&mut u, 8)})
                .to_string()
                .into_bytes(),
        ),
    };
    let (events, missing) = crud::events(&write, &body);
    let names: Vec<(Source, &str)> = events.iter().map(|e| (e.source, e.name.as_str())).collect();
    assert_eq!(
        names,
        vec![
            (Source::CRUD, write.schema.as_str()),
            (Source::CRUD, crud_name.as_str()),
            (Source::DAO_CRUD, write.operation.name()),
        ]
    );
    let entity = events[0].data.get("entity");
    assert!(
        events.iter().all(|e| e.data == events[0].data),
        "the three events differ in data"
    );
    assert_eq!(events[0].data.get("old_entity"), Some(&Value::Null));
    match &body {
        Body::TooLarge => assert!(entity.is_none() && missing == Some(Missing::TooLarge)),
        Body::Complete(bytes) if !bytes.iter().all(u8::is_ascii_whitespace) => {
            let parsed = serde_json::from_slice::<Value>(bytes).ok();
            assert_eq!(
                entity,
                parsed.as_ref(),
                "entity of {:?}",
                String::from_utf8_lossy(bytes)
            );
            assert_eq!(missing.is_some(), parsed.is_none());
        }
        _ => {
            assert!(missing.is_none());
            let expected = (write.operation == Operation::Delete).then(|| json!({"id": write.id}));
            assert_eq!(entity, expected.as_ref(), "entity of an empty body");
        }
    }
});
