use super::*;
use serde_json::json;

// What Envoy 1.40 returned for the property `metadata` in a wasm filter's `on_log` after an
// `envoy.filters.http.lua` filter set dynamic metadata (docs/src/emitted-wire.md).
// The Lua of each is in the test that uses it.
const TABLE: &str = concat!(
    "0a670a0b6576656e745f686f6f6b7312580a560a167061796d656e74732e726566756e642d69737375656412",
    "3c2a3a0a110a0863757272656e637912051a034555520a100a086f726465725f696412041a0234320a130a06",
    "616d6f756e741209110000000000c07240",
);
const SHAPES: &str = concat!(
    "0ad0020a0b6576656e745f686f6f6b7312c0020abd020a0a7368617065732e616c6c12ae022aab020a2f0a06",
    "6e657374656412252a230a210a0161121c2a1a0a080a016212031a01630a0e0a016e120911000000000000f0",
    "3f0a110a047a65726f12091100000000000000000a080a026661120220000a0b0a05656d70747912022a000a",
    "100a036e65671209110000000000001cc00a2d0a03617272122632240a0911000000000000f03f0a051a0374",
    "776f0a0220010a0c2a0a0a080a016b12031a01760a070a0174120220010a0e0a01691209110000000000c072",
    "400a0e0a0166120911000000000000f83f0a110a04687567651209119c7500883ce4377e0a080a017312031a",
    "01780a100a0362696712091100000000000040430a0e0a08656d70747973747212021a000a120a0375746612",
    "0b1a09c3a9e282acf09f98800a110a046e65677a1209110000000000000080",
);
const SCALARS: &str = concat!(
    "0a680a0b6576656e745f686f6f6b7312590a0c0a05732e6f6e6512031a01780a0c0a06732e626f6f6c120220",
    "010a150a07732e6569676874120a1a0861626364656667680a120a05732e6e756d1209110000000000c07240",
    "0a100a05732e73747212071a0568656c6c6f",
);
const JSON_STRING: &str = concat!(
    "0a5c0a0b6576656e745f686f6f6b73124d0a4b0a167061796d656e74732e726566756e642d69737375656412",
    "311a2f7b226f726465725f6964223a223432222c22616d6f756e74223a3330302c2263757272656e6379223a",
    "22455552227d",
);
const NIL: &str = "0a230a0b6576656e745f686f6f6b7312140a120a0c7061796d656e74732e6e696c12020800";
const TWO: &str = concat!(
    "0a660a0b6576656e745f686f6f6b7312570a250a0e6f72646572732e6372656174656412132a110a0f0a0269",
    "641209110000000000001c400a2e0a167061796d656e74732e726566756e642d69737375656412142a120a10",
    "0a086f726465725f696412041a023432",
);
const OTHER_NAMESPACE: &str = "0a1a0a0c736f6d656f6e655f656c7365120a0a080a017812031a0179";
const NO_DOT: &str = concat!(
    "0a2c0a0b6576656e745f686f6f6b73121d0a1b0a056e6f646f7412122a100a0e0a0161120911000000000000",
    "f03f",
);
const EDGE: &str = concat!(
    "0a93010a0b6576656e745f686f6f6b731283010a80010a06656467652e7812762a740a0b0a0362616412041a",
    "02fffe0a410a046465657012392a370a350a016112302a2e0a2c0a016212272a250a230a0163121e2a1c0a1a",
    "0a016412152a130a110a0165120c2a0a0a080a016612031a01670a100a036e616e120911000000000000f8ff",
    "0a100a03696e66120911000000000000f07f",
);
const SPARSE: &str = concat!(
    "0a3e0a0b6576656e745f686f6f6b73122f0a2d0a0b656467652e737061727365121e2a1c0a1a0a0673706172",
    "73651210320e0a031a01610a0208000a031a0163",
);
const ARRAY_TABLE: &str = concat!(
    "0a2c0a0b6576656e745f686f6f6b73121d0a1b0a0b656467652e6e756d6b6579120c320a0a031a01610a031a",
    "0162",
);
const RESPONSE_PHASE: &str = concat!(
    "0a2b0a0b6576656e745f686f6f6b73121c0a1a0a08726573702e736574120e2a0c0a0a0a046c617465120220",
    "010a1b0a0570726f626512120a100a0977616e745f7265737012031a0131",
);

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(text.get(at..at + 2).unwrap(), 16).unwrap())
        .collect()
}

fn metadata(text: &str) -> Emitted {
    from_metadata(&hex(text)).unwrap()
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(object) => object,
        _ => panic!("not an object"),
    }
}

fn emission(source: &str, event: &str, data: Value) -> Emission {
    Emission {
        source: source.into(),
        event: event.into(),
        data: object(data),
    }
}

fn rejected(key: &str, reason: Reason) -> Rejected {
    Rejected {
        key: key.into(),
        reason,
    }
}

// The protobuf writer, for the cases Lua cannot make.
use super::writer::{
    entry, len_field, pb_list, pb_metadata, pb_number, pb_object, pb_string, pb_struct, tag, varint,
};

/// Value bytes nesting `levels` objects: {"a": {"a": ... {}}}.
fn nested_objects(levels: usize) -> Vec<u8> {
    let mut value = pb_object(&[]);
    for _ in 1..levels {
        value = pb_object(&[(b"a", value)]);
    }
    value
}

#[test]
fn a_lua_table_of_strings_and_numbers() {
    // {order_id = "42", amount = 300, currency = "EUR"}: 300 came as the double 300.0.
    assert_eq!(
        metadata(TABLE),
        Emitted {
            emissions: vec![emission(
                "payments",
                "refund-issued",
                json!({"order_id": "42", "amount": 300, "currency": "EUR"})
            )],
            rejected: vec![],
        }
    );
    let emitted = metadata(TABLE);
    assert_eq!(
        serde_json::to_string(&emitted.emissions[0].data).unwrap(),
        r#"{"amount":300,"currency":"EUR","order_id":"42"}"#
    );
}

#[test]
fn every_shape_of_a_lua_table() {
    // {s = "x", i = 300, neg = -7, f = 1.5, big = 9007199254740993, huge = 1e300, t = true,
    //  fa = false, nested = {a = {b = "c", n = 1}}, arr = {1, "two", true, {k = "v"}},
    //  empty = {}, emptystr = "", utf = "é€😀", zero = 0, negz = -0.0}
    // Lua's numbers are doubles: 9007199254740993 arrived as 2^53; an empty table is a
    // Struct; an array-like table a ListValue.
    let emitted = metadata(SHAPES);
    assert_eq!(emitted.rejected, vec![]);
    assert_eq!(
        emitted.emissions,
        vec![emission(
            "shapes",
            "all",
            json!({
                "s": "x", "i": 300, "neg": -7, "f": 1.5, "big": 9007199254740992_i64,
                "huge": 1e300, "t": true, "fa": false,
                "nested": {"a": {"b": "c", "n": 1}},
                "arr": [1, "two", true, {"k": "v"}],
                "empty": {}, "emptystr": "", "utf": "é€😀", "zero": 0, "negz": 0
            })
        )]
    );
    let data = &emitted.emissions[0].data;
    assert!(data["i"].is_i64() && data["negz"].is_i64() && data["big"].is_i64());
    assert!(data["f"].is_f64() && data["huge"].is_f64());
}

#[test]
fn several_keys_of_scalars_are_not_objects() {
    // "s.str" = "hello", "s.num" = 300, "s.bool" = true, "s.one" = "x",
    // "s.eight" = "abcdefgh": only a table or a string holding a JSON object is data.
    let emitted = metadata(SCALARS);
    assert_eq!(emitted.emissions, vec![]);
    assert_eq!(
        emitted.rejected,
        vec![
            rejected("s.bool", Reason::NotObject),
            rejected("s.eight", Reason::Malformed),
            rejected("s.num", Reason::NotObject),
            rejected("s.one", Reason::Malformed),
            rejected("s.str", Reason::Malformed),
        ]
    );
}

#[test]
fn a_string_holding_json_is_parsed() {
    // '{"order_id":"42","amount":300,"currency":"EUR"}'
    assert_eq!(
        metadata(JSON_STRING).emissions,
        vec![emission(
            "payments",
            "refund-issued",
            json!({"order_id": "42", "amount": 300, "currency": "EUR"})
        )]
    );
}

#[test]
fn nil_is_null_and_not_an_object() {
    // set("event_hooks", "payments.nil", nil): a Value with null_value.
    assert_eq!(
        metadata(NIL),
        Emitted {
            emissions: vec![],
            rejected: vec![rejected("payments.nil", Reason::NotObject)],
        }
    );
}

#[test]
fn two_events_of_two_sources_in_key_order() {
    // "payments.refund-issued" = {order_id = "42"}, "orders.created" = {id = 7}
    assert_eq!(
        metadata(TWO).emissions,
        vec![
            emission("orders", "created", json!({"id": 7})),
            emission("payments", "refund-issued", json!({"order_id": "42"})),
        ]
    );
}

#[test]
fn other_namespaces_and_nothing_carry_nothing() {
    // set("someone_else", "x", "y"); and Envoy's empty answer when nothing was set.
    assert!(metadata(OTHER_NAMESPACE).is_empty());
    assert!(from_metadata(&[]).unwrap().is_empty());
    assert!(from_json(b"").unwrap().is_empty());
    assert!(from_json(b" \n").unwrap().is_empty());
    assert!(from_json(b"{}").unwrap().is_empty());
}

#[test]
fn a_key_without_a_dot_is_a_bad_key() {
    // set("event_hooks", "nodot", {a = 1})
    assert_eq!(
        metadata(NO_DOT).rejected,
        vec![rejected("nodot", Reason::BadKey)]
    );
}

#[test]
fn sparse_and_array_tables_are_lists() {
    // {sparse = {[1] = "a", [3] = "c"}}: the hole is null; {[1] = "a", [2] = "b"} is a
    // list, so not an object.
    assert_eq!(
        metadata(SPARSE).emissions,
        vec![emission(
            "edge",
            "sparse",
            json!({"sparse": ["a", null, "c"]})
        )]
    );
    assert_eq!(
        metadata(ARRAY_TABLE).rejected,
        vec![rejected("edge.numkey", Reason::NotObject)]
    );
}

#[test]
fn set_in_the_response_phase_and_beside_another_namespace() {
    // envoy_on_response: set("event_hooks", "resp.set", {late = true}), with namespace
    // "probe" set too.
    assert_eq!(
        metadata(RESPONSE_PHASE).emissions,
        vec![emission("resp", "set", json!({"late": true}))]
    );
}

#[test]
fn invalid_utf8_from_lua_is_malformed() {
    // {bad = "\255\254", nan = 0/0, inf = 1/0, deep = {a={b={c={d={e={f="g"}}}}}}}:
    // Lua passes any bytes as a protobuf string.
    assert_eq!(
        metadata(EDGE).rejected,
        vec![rejected("edge.x", Reason::Malformed)]
    );
}

#[test]
fn nan_and_infinities_are_bad_numbers() {
    for float in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let bytes = pb_metadata(&[(b"a.b", pb_object(&[(b"n", pb_number(float))]))]);
        assert_eq!(
            from_metadata(&bytes).unwrap().rejected,
            vec![rejected("a.b", Reason::BadNumber)]
        );
    }
}

#[test]
fn whole_doubles_within_2_pow_53_are_integers() {
    let cases = [
        (300.0, json!(300)),
        (-0.0, json!(0)),
        (-9007199254740992.0, json!(-9007199254740992_i64)),
        (9007199254740994.0, json!(9007199254740994.0)),
        (0.1, json!(0.1)),
        (-2.5, json!(-2.5)),
    ];
    for (float, want) in cases {
        let bytes = pb_metadata(&[(b"a.b", pb_object(&[(b"n", pb_number(float))]))]);
        let emitted = from_metadata(&bytes).unwrap();
        assert_eq!(emitted.emissions[0].data["n"], want, "{float}");
    }
    let emitted =
        from_json(br#"{"a.b": {"i": 300.0, "f": 1.5, "big": 18446744073709551615}}"#).unwrap();
    assert_eq!(
        serde_json::to_string(&emitted.emissions[0].data).unwrap(),
        r#"{"big":18446744073709551615,"f":1.5,"i":300}"#
    );
}

#[test]
fn depth_is_capped() {
    let at_cap = pb_metadata(&[(b"a.b", nested_objects(MAX_DEPTH))]);
    assert_eq!(from_metadata(&at_cap).unwrap().emissions.len(), 1);
    let over = pb_metadata(&[(b"a.b", nested_objects(MAX_DEPTH + 1))]);
    assert_eq!(
        from_metadata(&over).unwrap().rejected,
        vec![rejected("a.b", Reason::TooDeep)]
    );
    // Lists count as levels too.
    let mut list = pb_list(&[]);
    for _ in 2..MAX_DEPTH {
        list = pb_list(&[list]);
    }
    let ok = pb_metadata(&[(b"a.b", pb_object(&[(b"l", list.clone())]))]);
    assert_eq!(from_metadata(&ok).unwrap().emissions.len(), 1);
    let over = pb_metadata(&[(b"a.b", pb_object(&[(b"l", pb_list(&[list]))]))]);
    assert_eq!(
        from_metadata(&over).unwrap().rejected[0].reason,
        Reason::TooDeep
    );

    let text = |levels: usize| {
        format!(
            "{}{{}}{}",
            "{\"a\":".repeat(levels - 1),
            "}".repeat(levels - 1)
        )
    };
    for wrap in [
        |data: String| format!("{{\"a.b\": {data}}}"),
        |data: String| format!("{{\"a.b\": {}}}", Value::String(data)),
    ] {
        let ok = from_json(wrap(text(MAX_DEPTH)).as_bytes()).unwrap();
        assert_eq!(ok.emissions.len(), 1);
        let over = from_json(wrap(text(MAX_DEPTH + 1)).as_bytes()).unwrap();
        assert_eq!(over.rejected, vec![rejected("a.b", Reason::TooDeep)]);
    }
    let deep_text = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
    assert_eq!(from_json(deep_text.as_bytes()), Err(Reason::TooDeep));
}

#[test]
fn sizes_are_capped() {
    // The data's compact JSON: {"s":"xxx..."} is 8 bytes more than the string.
    let fits = "x".repeat(MAX_DATA_BYTES - 8);
    let over = "x".repeat(MAX_DATA_BYTES - 7);
    let bytes = pb_metadata(&[
        (b"a.fits", pb_object(&[(b"s", pb_string(fits.as_bytes()))])),
        (b"a.over", pb_object(&[(b"s", pb_string(over.as_bytes()))])),
    ]);
    let emitted = from_metadata(&bytes).unwrap();
    assert_eq!(emitted.emissions.len(), 1);
    assert_eq!(emitted.rejected, vec![rejected("a.over", Reason::TooLarge)]);
    // Whole doubles may grow when they become integers: 1e15 is 16 digits.
    let text = format!(r#"{{"a.b": {{"n": [{}]}}}}"#, vec!["1e15"; 1500].join(","));
    assert!(text.len() < MAX_DATA_BYTES);
    assert_eq!(
        from_json(text.as_bytes()).unwrap().rejected[0].reason,
        Reason::TooLarge
    );

    let big = "x".repeat(MAX_INPUT_BYTES);
    let namespace = pb_metadata(&[(b"a.b", pb_string(big.as_bytes()))]);
    assert_eq!(from_metadata(&namespace), Err(Reason::TooLarge));
    assert_eq!(
        from_json(format!(r#"{{"a.b":"{big}"}}"#).as_bytes()),
        Err(Reason::TooLarge)
    );
    // Another namespace of any size is skipped.
    let mut other = Vec::new();
    len_field(
        1,
        &entry(
            b"someone_else",
            &pb_struct(&[(b"x", pb_string(big.as_bytes()))]),
        ),
        &mut other,
    );
    other.extend(pb_metadata(&[(b"a.b", pb_object(&[]))]));
    assert_eq!(from_metadata(&other).unwrap().emissions.len(), 1);
}

#[test]
fn at_most_max_emissions_per_request() {
    let keys: Vec<String> = (0..MAX_EMISSIONS + 2)
        .map(|n| format!("s.e{n:03}"))
        .collect();
    let fields: Vec<(&[u8], Vec<u8>)> = keys
        .iter()
        .map(|key| (key.as_bytes(), pb_object(&[])))
        .collect();
    let emitted = from_metadata(&pb_metadata(&fields)).unwrap();
    assert_eq!(emitted.emissions.len(), MAX_EMISSIONS);
    assert_eq!(
        emitted.rejected,
        vec![
            rejected(&keys[MAX_EMISSIONS], Reason::TooMany),
            rejected(&keys[MAX_EMISSIONS + 1], Reason::TooMany),
        ]
    );
}

#[test]
fn keys() {
    assert_eq!(
        split_key("payments.refund-issued"),
        Ok(("payments", "refund-issued"))
    );
    assert_eq!(split_key("a.b.c"), Ok(("a", "b.c")));
    for bad in ["", ".", "a.", ".b", "ab"] {
        assert_eq!(split_key(bad), Err(Reason::BadKey), "{bad}");
    }
    let long = format!("s.{}", "e".repeat(MAX_KEY_BYTES - 1));
    assert_eq!(split_key(&long), Err(Reason::BadKey));
    assert!(split_key(long.get(..MAX_KEY_BYTES).unwrap()).is_ok());
    // A rejected key is kept cut, at a character boundary.
    let emitted = from_json(format!(r#"{{"{}": {{}}}}"#, "é".repeat(100)).as_bytes()).unwrap();
    assert_eq!(
        emitted.rejected,
        vec![rejected(&"é".repeat(64), Reason::BadKey)]
    );
    let bytes = pb_metadata(&[(b"s.\xff", pb_object(&[]))]);
    assert_eq!(
        from_metadata(&bytes).unwrap().emissions,
        vec![emission("s", "\u{fffd}", json!({}))]
    );
}

#[test]
fn json_text_from_filter_state() {
    // What another wasm filter's set_property(["event_hooks"], ...) gave back on Envoy.
    let text = hex(concat!(
        "7b227061796d656e74732e726566756e642d697373756564223a207b226f726465725f6964223a2022",
        "3432222c2022616d6f756e74223a203330307d7d"
    ));
    assert_eq!(
        from_json(&text).unwrap().emissions,
        vec![emission(
            "payments",
            "refund-issued",
            json!({"order_id": "42", "amount": 300})
        )]
    );
    let emitted = from_json(
        br#"{"a.obj": {"x": 1}, "a.text": "{\"y\": 2}", "a.list": [1], "a.null": null,
            "a.badtext": "{", "a.num": 1, "nodot": {}}"#,
    )
    .unwrap();
    assert_eq!(
        emitted,
        Emitted {
            emissions: vec![
                emission("a", "obj", json!({"x": 1})),
                emission("a", "text", json!({"y": 2})),
            ],
            rejected: vec![
                rejected("a.badtext", Reason::Malformed),
                rejected("a.list", Reason::NotObject),
                rejected("a.null", Reason::NotObject),
                rejected("a.num", Reason::NotObject),
                rejected("nodot", Reason::BadKey),
            ],
        }
    );
    assert_eq!(from_json(b"[1]"), Err(Reason::NotObject));
    assert_eq!(from_json(b"\"x\""), Err(Reason::NotObject));
    assert_eq!(from_json(b"{"), Err(Reason::Malformed));
    assert_eq!(from_json(b"\xff"), Err(Reason::Malformed));
}

#[test]
fn json_text_round_trips() {
    for fixture in [TABLE, SHAPES, TWO, SPARSE, RESPONSE_PHASE, JSON_STRING] {
        let emitted = metadata(fixture);
        let text = to_json(&emitted.emissions);
        assert_eq!(
            from_json(text.as_bytes()).unwrap().emissions,
            emitted.emissions
        );
    }
    assert_eq!(
        to_json(&metadata(TWO).emissions),
        r#"{"orders.created":{"id":7},"payments.refund-issued":{"order_id":"42"}}"#
    );
    assert_eq!(to_json(&[]), "{}");
}

#[test]
fn malformed_protobuf_is_an_error_not_a_panic() {
    let table = hex(TABLE);
    for len in 0..table.len() {
        // Every cut of a valid message: an error or fewer events, never a panic.
        let _ = from_metadata(&table[..len]);
    }
    for bad in [
        &b"\x0a"[..],                                // length missing
        b"\x0a\x05\x0a",                             // length past the end
        b"\x08",                                     // varint missing
        b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", // varint over 64 bits
        b"\x0b",                                     // a group
        b"\x0e",                                     // wire type 6
        b"\x00",                                     // field 0
        b"\x09\x01",                                 // fixed64 cut
        b"\x0d\x01\x02",                             // fixed32 cut
        b"\x08\x01",                                 // filter_metadata as a varint
    ] {
        assert_eq!(from_metadata(bad), Err(Reason::Malformed), "{bad:?}");
    }
    // A Value whose number is not fixed64, inside the data: that event only.
    let mut wrong = Vec::new();
    tag(2, 0, &mut wrong);
    varint(1, &mut wrong);
    let bytes = pb_metadata(&[
        (b"a.b", pb_object(&[(b"n", wrong)])),
        (b"a.c", pb_object(&[])),
    ]);
    assert_eq!(
        from_metadata(&bytes).unwrap(),
        Emitted {
            emissions: vec![emission("a", "c", json!({}))],
            rejected: vec![rejected("a.b", Reason::Malformed)],
        }
    );
    // Unknown fields are skipped; the last of a oneof wins; a Value with no kind is null.
    let mut value = pb_number(1.0);
    tag(9, 5, &mut value);
    value.extend_from_slice(&[0; 4]);
    value.extend(pb_object(&[(b"k", Vec::new())]));
    let bytes = pb_metadata(&[(b"a.b", value)]);
    assert_eq!(
        from_metadata(&bytes).unwrap().emissions,
        vec![emission("a", "b", json!({"k": null}))]
    );
}

#[test]
fn reasons_have_names() {
    let names: Vec<&str> = Reason::ALL.iter().map(|reason| reason.as_str()).collect();
    assert_eq!(
        names,
        [
            "malformed",
            "not_object",
            "bad_key",
            "too_large",
            "too_deep",
            "bad_number",
            "too_many"
        ]
    );
    assert_eq!(Reason::TooDeep.to_string(), "too_deep");
}
