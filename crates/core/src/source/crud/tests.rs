use super::*;
use serde_json::json;

fn write(operation: Operation, schema: &str, id: Option<&str>) -> Option<Write> {
    Some(Write {
        operation,
        schema: schema.into(),
        id: id.map(Into::into),
    })
}

#[test]
fn kong_admin_paths_map_to_writes() {
    use Operation::*;
    let cases = [
        ("POST", "/consumers", 201, write(Create, "consumers", None)),
        ("POST", "/consumers/", 201, write(Create, "consumers", None)),
        (
            "POST",
            "/consumers?x=1",
            200,
            write(Create, "consumers", None),
        ),
        (
            "PUT",
            "/consumers/bob",
            201,
            write(Create, "consumers", Some("bob")),
        ),
        (
            "PUT",
            "/consumers/bob",
            200,
            write(Update, "consumers", Some("bob")),
        ),
        (
            "PATCH",
            "/consumers/bob",
            200,
            write(Update, "consumers", Some("bob")),
        ),
        (
            "DELETE",
            "/consumers/bob",
            204,
            write(Delete, "consumers", Some("bob")),
        ),
        (
            "POST",
            "/services/s1/routes",
            201,
            write(Create, "routes", None),
        ),
        (
            "PATCH",
            "/services/s1/routes/r1",
            200,
            write(Update, "routes", Some("r1")),
        ),
        (
            "DELETE",
            "/services/s1/routes/r1",
            204,
            write(Delete, "routes", Some("r1")),
        ),
        // Not writes: reads, errors, an id where a collection belongs, the root.
        ("GET", "/consumers", 200, None),
        ("POST", "/consumers", 409, None),
        ("DELETE", "/consumers/bob", 404, None),
        ("POST", "/consumers/bob", 201, None),
        ("PATCH", "/consumers", 200, None),
        ("DELETE", "/consumers", 204, None),
        ("POST", "/", 201, None),
        ("POST", "/consumers/bob/plugins.json", 201, None),
    ];
    for (method, path, status, expected) in cases {
        assert_eq!(
            map(method, path, status, "/"),
            expected,
            "{method} {path} {status}"
        );
    }
}

#[test]
fn a_prefix_is_stripped_first() {
    assert_eq!(
        map("POST", "/admin/consumers", 201, "/admin/"),
        write(Operation::Create, "consumers", None)
    );
    assert_eq!(map("POST", "/consumers", 201, "/admin/"), None);
    assert_eq!(map("POST", "/admin", 201, "/admin/"), None);
}

#[test]
fn each_write_emits_kong_s_three_events() {
    let body = Body::Complete(br#"{"id": "c1", "username": "bob"}"#.to_vec());
    let (events, missing) = events(&write(Operation::Create, "consumers", None).unwrap(), &body);
    assert_eq!(missing, None);
    let names: Vec<(Source, &str)> = events.iter().map(|e| (e.source, e.name.as_str())).collect();
    assert_eq!(
        names,
        vec![
            (Source::CRUD, "consumers"),
            (Source::CRUD, "consumers:create"),
            (Source::DAO_CRUD, "create")
        ]
    );
    assert_eq!(
        events[0].data,
        json!({"operation": "create", "entity": {"id": "c1", "username": "bob"},
               "old_entity": null, "schema": "consumers"})
    );
}

#[test]
fn entities_without_a_usable_body() {
    let delete = write(Operation::Delete, "consumers", Some("bob")).unwrap();
    let (events_, missing) = events(&delete, &Body::Empty);
    assert_eq!(events_[0].data["entity"], json!({"id": "bob"}));
    assert_eq!(missing, None);
    let update = write(Operation::Update, "consumers", Some("bob")).unwrap();
    let (events_, missing) = events(&update, &Body::TooLarge);
    assert!(events_[0].data.get("entity").is_none());
    assert_eq!(missing, Some(Missing::TooLarge));
    let (events_, missing) = events(&update, &Body::Complete(b"<html>".to_vec()));
    assert!(events_[0].data.get("entity").is_none());
    assert_eq!(missing, Some(Missing::NotJson));
    let (events_, missing) = events(&update, &Body::Empty);
    assert!(events_[0].data.get("entity").is_none());
    assert_eq!(missing, None);
}

#[test]
fn settings() {
    let problems = Problems::default();
    let parsed = Settings::parse(
        &json!({"match": {"request.host": "admin"}, "prefix": "/admin"}),
        "crud",
        &problems,
    )
    .unwrap();
    assert!(problems.is_empty());
    assert_eq!(
        (parsed.prefix.as_str(), parsed.max_body_bytes),
        ("/admin/", 65_536)
    );
    let problems = Problems::default();
    Settings::parse(
        &json!({"prefix": "admin", "max_body_bytes": 0, "x": 1}),
        "crud",
        &problems,
    );
    assert_eq!(
        problems.messages(),
        vec![
            "crud.x: unknown field; expected one of: match, prefix, max_body_bytes",
            "crud.match: missing required field",
            "crud.prefix: must start with /",
            "crud.max_body_bytes: must be between 1 and 1048576",
        ]
    );
}
