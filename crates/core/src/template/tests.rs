use super::*;
use serde_json::json;

fn context() -> Value {
    json!({
        "request": {
            "path": "/orders/42",
            "headers": {"x-note": "say \"hi\"\\bye\nnext"},
        },
        "response": {"status": 503, "ok": false},
        "entity": {"username": "ann", "tags": ["a", "b"], "meta": {"k": 1}, "gone": null},
        "source": "traffic",
        "event": "request",
    })
}

fn render(template: &str, escape: Escape) -> String {
    Template::parse(template)
        .unwrap()
        .render(&context(), escape)
}

fn error(template: &str) -> String {
    Template::parse(template).unwrap_err()
}

#[test]
fn fields_are_inserted_raw_or_escaped() {
    assert_eq!(
        render("{{ request.path }} -> {{response.status}}", Escape::None),
        "/orders/42 -> 503"
    );
    assert_eq!(render("{*request.path*}", Escape::Percent), "/orders/42");
    assert_eq!(
        render("{{request.path}}", Escape::Percent),
        "%2Forders%2F42"
    );
    assert_eq!(
        render("{{ source }}:{{ event }}", Escape::Json),
        "traffic:request"
    );
    assert_eq!(render("no tags at all", Escape::Json), "no tags at all");
    assert_eq!(render("", Escape::Json), "");
}

#[test]
fn values_render_by_type() {
    assert_eq!(render("{{ entity.username }}", Escape::None), "ann");
    assert_eq!(render("{{ response.ok }}", Escape::None), "false");
    assert_eq!(render("{{ entity.tags }}", Escape::None), r#"["a","b"]"#);
    assert_eq!(render("{{ entity.tags.1 }}", Escape::None), "b");
    assert_eq!(render("{{ entity.meta }}", Escape::None), r#"{"k":1}"#);
    // null, missing fields and paths through non-objects render empty.
    assert_eq!(render("[{{ entity.gone }}]", Escape::None), "[]");
    assert_eq!(render("[{{ entity.nope }}]", Escape::None), "[]");
    assert_eq!(render("[{{ entity.tags.9 }}]", Escape::None), "[]");
    assert_eq!(render("[{{ request.path.x }}]", Escape::None), "[]");
}

#[test]
fn json_escaping_keeps_a_json_body_valid() {
    let body = render(
        r#"{"text": "{{ request.headers.x-note }} on {{ request.path }}"}"#,
        Escape::Json,
    );
    let parsed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(parsed["text"], "say \"hi\"\\bye\nnext on /orders/42");
    // Objects land as a JSON string inside quotes; raw, they are JSON themselves.
    let body = render(
        r#"{"as_text": "{{ entity.meta }}", "as_json": {* entity.meta *}}"#,
        Escape::Json,
    );
    let parsed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(parsed, json!({"as_text": "{\"k\":1}", "as_json": {"k": 1}}));
}

#[test]
fn json_escaping_of_every_kind_of_character() {
    let context = json!({"v": "q\" b\\ n\n r\r t\t \u{8}\u{c} \u{1}\u{1f}\u{7f} é 雪 🎉 /"});
    let rendered = Template::parse("{{ v }}")
        .unwrap()
        .render(&context, Escape::Json);
    assert_eq!(
        rendered,
        "q\\\" b\\\\ n\\n r\\r t\\t \\b\\f \\u0001\\u001F\u{7f} é 雪 🎉 /"
    );
    let decoded: String = serde_json::from_str(&format!("\"{rendered}\"")).unwrap();
    assert_eq!(decoded, context["v"]);
}

#[test]
fn percent_encoding_of_form_and_query_values() {
    let context = json!({"v": "a&b=c d%e+f/g?h#i~j-k.l_m é 雪"});
    let rendered = Template::parse("x={{ v }}")
        .unwrap()
        .render(&context, Escape::Percent);
    assert_eq!(
        rendered,
        "x=a%26b%3Dc%20d%25e%2Bf%2Fg%3Fh%23i~j-k.l_m%20%C3%A9%20%E9%9B%AA"
    );
}

#[test]
fn header_values_lose_control_characters() {
    let context = json!({"v": "a\r\nInjected: yes\u{0}\u{7f}\tb é"});
    let template = Template::parse("{{ v }}").unwrap();
    assert_eq!(
        template.render(&context, Escape::Header),
        "aInjected: yes\tb é"
    );
    // {* *} is raw even here: the handler strips the whole header value again.
    let raw = Template::parse("{* v *}").unwrap();
    assert_eq!(raw.render(&context, Escape::Header), context["v"]);
}

#[test]
fn comments_and_escaped_tags() {
    assert_eq!(
        render("a{# note #}\nb{#x#}c", Escape::None),
        "abc",
        "a comment and the newline right after it are dropped"
    );
    assert_eq!(
        render(r"\{{ request.path }} \{* x *} \{% x %}", Escape::None),
        "{{ request.path }} {* x *} {% x %}"
    );
    assert_eq!(render(r"C:\\{{ source }}", Escape::None), r"C:\\traffic");
    assert_eq!(render(r"\\\{{ source }}", Escape::None), r"\\{{ source }}");
    // A lone or unknown brace is text; so are closers without an opener.
    assert_eq!(
        render(r#"{"a": {"b": [1]}} {x} { }} *} {"#, Escape::None),
        r#"{"a": {"b": [1]}} {x} { }} *} {"#
    );
}

#[test]
fn syntax_errors_say_what_and_where_never_the_text() {
    assert_eq!(error("0123456789\"{{ secret"), "unclosed {{ at byte 11");
    assert_eq!(error("{* a"), "unclosed {* at byte 0");
    assert_eq!(error("ab{# a"), "unclosed {# at byte 2");
    assert_eq!(error("x {{ }}"), "empty {{ }} at byte 2");
    assert_eq!(error("{**}"), "empty {* *} at byte 0");
    let bad_path = "expected a dotted field path such as request.headers.x-team (names of A-Z a-z 0-9 _ -; a number indexes an array from 0); expressions cannot run here";
    for (template, opener) in [
        ("{{ a..b }}", "{{"),
        ("{{ .a }}", "{{"),
        ("{{ a. }}", "{{"),
        ("{{ entity[\"secret\"] }}", "{{"),
        ("{{ a b }}", "{{"),
        ("{{ a + 1 }}", "{{"),
        ("{* f() *}", "{*"),
    ] {
        assert_eq!(
            error(template),
            format!("{opener} at byte 0: {bad_path}"),
            "{template}"
        );
    }
    assert!(!error("{{ entity[\"hunter2\"] }}").contains("hunter2"));
    assert_eq!(
        error("é{% if x then %}"),
        "{% at byte 2: Lua code cannot run in this filter; insert fields with {{ field.path }} or {* field.path *} (write \\{% for the text)"
    );
    assert_eq!(
        error("{(file.html)}"),
        "{( at byte 0: template includes are not supported (write \\{( for the text)"
    );
    assert_eq!(
        error("{[ x ]}"),
        "{[ at byte 0: template includes are not supported (write \\{[ for the text)"
    );
    assert_eq!(
        error("{-raw-}x{-raw-}"),
        "{- at byte 0: template blocks are not supported (write \\{- for the text)"
    );
}

#[test]
fn read_reports_at_the_json_path() {
    let problems = Problems::default();
    assert!(Template::read("{\"t\": \"{{ x\"}", "hooks[0].config.body", &problems).is_none());
    assert!(Template::read("{{ x }}", "hooks[0].config.body", &problems).is_some());
    let found: Vec<String> = problems
        .into_vec()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(found, vec!["hooks[0].config.body: unclosed {{ at byte 7"]);
}

#[test]
fn fields_lists_what_a_template_reads() {
    let template = Template::parse("{{ a.b }} {* c *} {# d #} {{ e.0 }}").unwrap();
    let fields: Vec<String> = template.fields().map(|path| path.join(".")).collect();
    assert_eq!(fields, vec!["a.b", "c", "e.0"]);
    assert!(!template.is_literal());
    assert!(
        Template::parse("just {# a comment #} text")
            .unwrap()
            .is_literal()
    );
}

#[test]
fn literal_templates_render_their_text_exactly() {
    let text = "{{ not.a.tag }} {% nor this %}";
    assert_eq!(
        Template::literal(text).render(&context(), Escape::Json),
        text
    );
    assert!(Template::literal(text).is_literal());
    assert_eq!(Template::literal("").render(&context(), Escape::Json), "");
}

#[test]
fn rendering_stops_at_its_limit() {
    let big = "é".repeat(400_000); // 800,000 bytes
    let context = json!({"big": big, "list": [big.clone(), big.clone()]});
    let template = Template::parse("{{ big }}{{ big }}").unwrap();
    let rendered = template.render(&context, Escape::None);
    assert!(rendered.len() <= MAX_RENDERED && rendered.len() > MAX_RENDERED - 2);
    assert!(rendered.chars().all(|c| c == 'é'));
    let mut out = Vec::new();
    assert_eq!(
        template.render_into(&context, Escape::None, &mut out, 1_000),
        Err(Overflow)
    );
    assert!(out.len() <= 1_000);
    // Objects are serialized through the limit too, and escaping counts.
    let mut out = Vec::new();
    let list = Template::parse("{{ list }}").unwrap();
    assert_eq!(
        list.render_into(&context, Escape::Percent, &mut out, 5_000),
        Err(Overflow)
    );
    assert!(out.len() <= 5_000);
    let mut out = b"0123".to_vec();
    assert_eq!(
        Template::parse("{{ source }}").unwrap().render_into(
            &json!({"source": "abc"}),
            Escape::None,
            &mut out,
            7
        ),
        Ok(())
    );
    assert_eq!(out, b"0123abc");
}
