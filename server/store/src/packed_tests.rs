//! The packed format: its grammar by hand-built bytes, its errors, and its stable key table.

#![allow(clippy::unwrap_used, reason = "tests")]

use super::*;

fn text(bytes: &[u8]) -> Result<String, UnpackError> {
    let mut out = Vec::new();
    unpack(bytes, &mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

/// Packs with the sink calls `f` makes, and returns the unpacked text beside the text the
/// JSON sink writes for the same calls.
fn both(f: impl Fn(&mut dyn Sink)) -> (String, String) {
    let mut packed = Vec::new();
    f(&mut Packer::new(&mut packed));
    let mut json = Vec::new();
    f(&mut JsonText::new(&mut json));
    (text(&packed).unwrap(), String::from_utf8(json).unwrap())
}

#[test]
fn every_value_kind_unpacks_to_what_the_json_sink_writes() {
    let (unpacked, json) = both(|s| {
        s.begin_object();
        s.key(Key::Id);
        s.str("a \"b\"\n\u{1}é");
        s.name("map key \\");
        s.begin_array();
        for x in [i64::MIN, -1, 0, 63, 64, i64::MAX] {
            s.i64(x);
        }
        for x in [0, 127, 128, u64::MAX] {
            s.u64(x);
        }
        for x in [
            0.0,
            -0.0,
            0.1 + 0.2,
            1e-7,
            2.5e21,
            f64::NAN,
            f64::NEG_INFINITY,
        ] {
            s.f64(x);
        }
        s.bool(true);
        s.bool(false);
        s.raw(r#"{"x":[1,null]}"#);
        s.begin_object();
        s.end_object();
        s.begin_array();
        s.end_array();
        s.end_array();
        s.key(Key::Detail);
        s.begin_object();
        s.key(Key::Action);
        s.raw("null");
        s.end_object();
        s.end_object();
    });
    assert_eq!(unpacked, json);
    assert_eq!(
        json,
        r#"{"id":"a \"b\"\n\u0001é","map key \\":[-9223372036854775808,-1,0,63,64,9223372036854775807,0,127,128,18446744073709551615,0.0,-0.0,0.30000000000000004,1e-7,2.5e+21,null,null,true,false,{"x":[1,null]},{},[]],"detail":{"action":null}}"#
    );
    serde_json::from_str::<serde_json::Value>(&json).unwrap();
}

#[test]
fn strings_of_every_length_class_round_trip() {
    for len in [0, 1, 127, 128, 129, 16_383, 16_384, 70_000] {
        let text = "é".repeat(len / 2) + &"x".repeat(len % 2);
        let (unpacked, json) = both(|s| {
            s.begin_array();
            s.str(&text);
            s.raw(&format!("{:?}", "x".repeat(len)));
            s.end_array();
        });
        assert_eq!(unpacked, json, "{len}");
        let back: (String, String) = serde_json::from_str(&json).unwrap();
        assert_eq!(back, (text.clone(), "x".repeat(len)));
    }
}

#[test]
fn the_bytes_are_the_documented_grammar() {
    let mut packed = Vec::new();
    let mut p = Packer::new(&mut packed);
    p.begin_object();
    p.key(Key::Status);
    p.u64(300);
    p.name("k");
    p.i64(-2);
    p.key(Key::Plugins);
    p.begin_array();
    p.f64(1.5);
    p.end_array();
    p.end_object();
    let mut want = vec![tag::OBJ, tag::KEY + 14, tag::U64, 0xAC, 0x02];
    want.extend([
        tag::STR,
        1,
        b'k',
        tag::I64,
        3,
        tag::KEY + 22,
        tag::ARR,
        tag::F64,
    ]);
    want.extend(1.5f64.to_le_bytes());
    want.extend([tag::END, tag::END]);
    assert_eq!(packed, want);
    assert_eq!(
        text(&packed).unwrap(),
        r#"{"status":300,"k":-2,"plugins":[1.5]}"#
    );
}

/// The key table is part of what is stored: indexes never change, names are only appended.
#[test]
fn the_key_table_is_stable() {
    assert_eq!(
        QUOTED.concat(),
        concat!(
            r#""schema_version":"id":"timestamp_ms":"ended_ms":"request_id":"session_hash":"#,
            r#""conversation_hash":"requested_model":"recipe":"decision":"confidence":"#,
            r#""base_model":"final_model":"backend":"status":"lifecycle":"streaming":"signals":"#,
            r#""signal_confidences":"projection_scores":"eval_trace":"learning":"plugins":"#,
            r#""use_reasoning":"reasoning_effort":"timings":"usage":"cost":"cache_hit":"#,
            r#""terminal_reason":"request_body":"request_body_truncated":"response_body":"#,
            r#""response_body_truncated":"signals_ms":"routing_ms":"upstream_ttfb_ms":"#,
            r#""total_ms":"prompt_tokens":"cached_prompt_tokens":"completion_tokens":"actual":"#,
            r#""baseline":"currency":"baseline_model":"action":"reason":"scope":"mode":"#,
            r#""switch_cost":"detail":"decision_name":"matched":"root_trace":"node_type":"#,
            r#""signal_type":"signal_name":"label":"children":"#,
        )
    );
    assert_eq!(Key::SchemaVersion as usize, 0);
    assert_eq!(Key::Detail as usize, 50);
    assert_eq!(Key::Children as usize, QUOTED.len() - 1);
    assert_eq!(Key::FinalModel.quoted(), r#""final_model":"#);
    assert_eq!(Key::index_of("root_trace"), Some(Key::RootTrace as u8));
    assert_eq!(Key::index_of("root"), None);
    assert_eq!(Key::index_of("root_trace_"), None);
}

#[test]
fn damaged_bytes_are_errors_at_the_byte_that_is_wrong() {
    let mut good = Vec::new();
    let mut p = Packer::new(&mut good);
    p.begin_object();
    p.key(Key::Id);
    p.str("abc");
    p.key(Key::Usage);
    p.begin_object();
    p.key(Key::PromptTokens);
    p.u64(1 << 40);
    p.end_object();
    p.end_object();
    text(&good).unwrap();
    // Every strict prefix is truncated; nothing panics.
    for n in 0..good.len() {
        assert!(text(&good[..n]).is_err(), "prefix of {n} bytes");
    }
    let err = |bytes: &[u8]| text(bytes).unwrap_err();
    assert_eq!(err(&[tag::NULL, tag::NULL]).what, "trailing bytes");
    assert_eq!(
        err(&[tag::ARR, 0x42, tag::END]),
        UnpackError {
            at: 1,
            what: "unknown tag"
        }
    );
    assert_eq!(
        err(&[tag::OBJ, tag::KEY + 127, tag::NULL]).what,
        "unknown field name"
    );
    assert_eq!(
        err(&[tag::OBJ, tag::NULL, tag::NULL]).what,
        "member without a name"
    );
    // A name with no value after it, and a field name where a value belongs.
    assert_eq!(err(&[tag::OBJ, tag::KEY, tag::END]).what, "unknown tag");
    assert_eq!(err(&[tag::ARR, tag::KEY, tag::END]).what, "unknown tag");
    assert_eq!(err(&[tag::STR, 2, 0xC3, 0x28]).what, "string is not UTF-8");
    assert_eq!(err(&[tag::RAW, 5, b'n']).what, "truncated");
    let mut long = vec![tag::U64];
    long.extend([0xFF; 10]);
    long.push(0);
    assert_eq!(err(&long).what, "varint longer than 64 bits");
    let deep: Vec<u8> = std::iter::repeat_n(tag::ARR, 40)
        .chain(std::iter::repeat_n(tag::END, 40))
        .collect();
    assert_eq!(err(&deep).what, "nested too deep");
    let fine: Vec<u8> = std::iter::repeat_n(tag::ARR, MAX_DEPTH)
        .chain(std::iter::repeat_n(tag::END, MAX_DEPTH))
        .collect();
    assert_eq!(text(&fine).unwrap().len(), 2 * MAX_DEPTH);
    assert!(err(&[]).to_string().contains("truncated at byte 0"));
}

/// Random bytes give an error or valid JSON, never a panic. (RAW values are copied as they
/// are, so they are left out: only the packer writes them, from JSON text.)
#[test]
fn random_bytes_never_panic() {
    let mut rng = fastrand::Rng::with_seed(3);
    let mut out = Vec::new();
    for _ in 0..20_000 {
        let len = rng.usize(0..24);
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                let b = if rng.bool() {
                    rng.u8(0..=11)
                } else {
                    rng.u8(..)
                };
                if b == tag::RAW {
                    tag::STR
                } else {
                    b
                }
            })
            .collect();
        out.clear();
        if unpack(&bytes, &mut out).is_ok() {
            serde_json::from_slice::<serde_json::Value>(&out).unwrap();
        }
    }
}

/// A value built with the public packer is one byte per known field name, reads as the same
/// text as the JSON sink's, and sits inside a record as a packed value.
#[test]
fn json_packer_values_read_as_text_and_nest_in_records() {
    let mut p = JsonPacker::with_capacity(16);
    p.begin_array();
    p.begin_object();
    p.field(FieldName::new("decision_name"));
    p.str("math");
    p.field(FieldName::new("not a known name"));
    p.null();
    p.field(FieldName::new("children"));
    p.begin_array();
    p.i64(-3);
    p.u64(7);
    p.f64(0.5);
    p.bool(false);
    p.end_array();
    p.end_object();
    p.end_array();
    let raw = p.finish();
    let want = r#"[{"decision_name":"math","not a known name":null,"children":[-3,7,0.5,false]}]"#;
    assert_eq!(raw.get(), want);
    assert_eq!(raw, RawJson::from_trusted(want.into()));
    assert_eq!(serde_json::to_string(&raw).unwrap(), want);
    assert_eq!(
        raw.packed_bytes().unwrap()[..3],
        [tag::ARR, tag::OBJ, tag::KEY + 51]
    );
    let record = crate::rows::ReplayRecord {
        eval_trace: Some(raw),
        ..crate::rows::ReplayRecord::new(9)
    };
    let (mut json, mut packed, mut unpacked) = (Vec::new(), Vec::new(), Vec::new());
    crate::record_json::write(&mut json, &record).unwrap();
    crate::record_json::pack(&mut packed, &record).unwrap();
    unpack(&packed, &mut unpacked).unwrap();
    assert_eq!(json, serde_json::to_vec(&record).unwrap());
    assert_eq!(unpacked, json);
    // A malformed value (a misused packer) reads as null and keeps the text valid.
    let mut bad = JsonPacker::default();
    bad.begin_object();
    bad.field(FieldName::new("x"));
    assert_eq!(bad.finish().get(), "null");
}
