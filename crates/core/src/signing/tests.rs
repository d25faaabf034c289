use super::*;
use serde_json::json;

fn signing(config: Value) -> Result<Signing, Vec<String>> {
    signing_with_env(config, &[])
}

fn signing_with_env(config: Value, env: &[(&str, &str)]) -> Result<Signing, Vec<String>> {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let problems = Problems::with_env(Box::new(move |name: &str| {
        env.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    }));
    let object = Object::new(&config, "config", KEYS, &problems).unwrap();
    let parsed = Signing::parse(&object, &problems);
    if problems.is_empty() {
        Ok(parsed)
    } else {
        Err(problems.messages())
    }
}

#[test]
fn kong_test_vector() {
    // The reference's vector: secret `hunter2`, body `foobar`.
    assert_eq!(
        kong_signature(&Secret::new("hunter2"), b"foobar"),
        "sha1=47632029fcc7936dc59ff90b5bb736a44c74ab62"
    );
    // RFC 2202 test case 2.
    assert_eq!(
        kong_signature(&Secret::new("Jefe"), b"what do ya want for nothing?"),
        "sha1=effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
    );
}

#[test]
fn github_test_vector() {
    // GitHub's documentation ("Validating webhook deliveries").
    assert_eq!(
        github_signature(&Secret::new("It's a Secret to Everybody"), b"Hello, World!"),
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    );
}

#[test]
fn standard_webhooks_test_vector() {
    // The vector of the Standard Webhooks reference libraries.
    let signing = signing(json!({"signature": "standard-webhooks", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})).unwrap();
    let headers = signing.headers(
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1_614_265_330,
        br#"{"test": 2432232314}"#,
    );
    assert_eq!(
        headers,
        vec![(
            "webhook-signature".to_string(),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".to_string()
        )]
    );
}

#[test]
fn rotation_sends_one_standard_signature_per_secret() {
    let second = format!("whsec_{}", STANDARD.encode(b"another key"));
    let signing = signing(json!({"signature": "standard-webhooks",
        "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "secrets": [second]}))
    .unwrap();
    let value = &signing.headers("msg_1", 1, b"{}")[0].1;
    let parts: Vec<&str> = value.split(' ').collect();
    assert_eq!(parts.len(), 2);
    assert!(parts.iter().all(|part| part.starts_with("v1,")));
    assert_eq!(
        parts[1],
        standard_signature(&Secret::new("another key"), "msg_1", 1, b"{}")
    );
}

#[test]
fn the_default_scheme_is_kong_and_github_is_one_header() {
    let kong = signing(json!({"secret": "hunter2"})).unwrap();
    assert_eq!(kong.scheme(), Scheme::Kong);
    assert_eq!(
        kong.headers("id", 1, b"foobar"),
        vec![(
            "x-kong-signature".to_string(),
            "sha1=47632029fcc7936dc59ff90b5bb736a44c74ab62".to_string()
        )]
    );
    let github =
        signing(json!({"signature": "github", "secret": "It's a Secret to Everybody"})).unwrap();
    assert_eq!(
        github.headers("id", 1, b"Hello, World!")[0].0,
        "x-hub-signature-256"
    );
    assert!(
        signing(json!({}))
            .unwrap()
            .headers("id", 1, b"x")
            .is_empty()
    );
}

#[test]
fn secrets_from_the_environment() {
    let signing = signing_with_env(
        json!({"signature": "standard-webhooks", "secret_env": "HOOK_SECRET", "secrets_env": ["OLD_SECRET"]}),
        &[("HOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), ("OLD_SECRET", "whsec_YW5vdGhlcg==")],
    )
    .unwrap();
    assert_eq!(signing.headers("m", 1, b"").len(), 1);
    assert_eq!(signing.headers("m", 1, b"")[0].1.split(' ').count(), 2);
    assert_eq!(
        signing_with_env(json!({"secret_env": "MISSING"}), &[]).unwrap_err(),
        vec![
            "config.secret_env: environment variable MISSING is not set (give it to the VM: Envoy's vm_config.environment_variables, Kong's nginx_main_env; Kong 3.4 to 3.6 give filters no environment variables: there, use secret instead)"
        ]
    );
}

#[test]
fn configuration_errors_never_quote_a_secret() {
    let secret = "s3cr3t-value";
    let cases = [
        (
            json!({"secret": secret, "secret_env": "X"}),
            "config: set secret or secret_env, not both",
        ),
        (
            json!({"signature": "sha512", "secret": secret}),
            "config.signature: unknown signature; expected one of: kong, standard-webhooks, github",
        ),
        (
            json!({"signature": "standard-webhooks", "secret": secret}),
            "config.secret: a standard-webhooks secret is whsec_ followed by the base64 of the key",
        ),
        (
            json!({"signature": "standard-webhooks", "secret": format!("whsec_{secret}!!")}),
            "config.secret: a standard-webhooks secret is whsec_ followed by the base64 of the key",
        ),
        (
            json!({"secret": secret, "secrets": ["other"]}),
            "config.secrets: only the standard-webhooks signature carries several secrets; kong and github sign with one",
        ),
        (
            json!({"signature": "github"}),
            "config.signature: needs a secret (secret or secret_env)",
        ),
        (
            json!({"secret": ""}),
            "config.secret: must not be empty; remove it to send unsigned deliveries",
        ),
        (
            json!({"secrets": [3]}),
            "config.secrets[0]: expected a string, found a number",
        ),
    ];
    for (config, expected) in cases {
        let errors = signing(config.clone()).unwrap_err();
        assert!(errors.iter().any(|e| e == expected), "{config}: {errors:?}");
        assert!(!errors.join("\n").contains(secret), "{errors:?}");
    }
}

#[test]
fn secrets_never_print() {
    let signing = signing(json!({"secret": "hunter2"})).unwrap();
    assert!(!format!("{signing:?}").contains("hunter2"));
    assert_eq!(format!("{:?}", Secret::new("hunter2")), "[redacted]");
}
