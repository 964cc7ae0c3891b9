//! qerr::Tokenizer over the C API: a small tokenizer.json written here, and
//! the golden ids of Hugging Face's tokenizers.js when the shared data is there.
#![cfg(qerr_model)]
mod common;

use qerr::{status, Tokenizer};

const TOY: &str = r#"{"added_tokens":[{"id":3,"content":"<s>","special":true}],
"post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>","type_id":0}},
{"Sequence":{"id":"A","type_id":0}}],"special_tokens":{"<s>":{"id":"<s>","ids":[3]}}},
"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2," ":4},"merges":["a b"]}}"#;

fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("qerr-rs-tok-{}-{}", std::process::id(), name));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn toy_encode_decode() {
    let d = scratch("toy");
    std::fs::write(d.join("tokenizer.json"), TOY).unwrap();
    let t = Tokenizer::load(&d).unwrap();
    assert_eq!(t.vocab_size(), 5);
    assert_eq!((t.bos_id(), t.eos_id()), (Some(3), None));
    let ids = t.encode("ab ba", true, true).unwrap();
    assert_eq!(ids, vec![3, 2, 4, 1, 0]);
    assert_eq!(t.encode("<s>a", false, false).unwrap(), vec![0]);
    assert_eq!(t.decode(&ids, false).unwrap(), "<s>ab ba");
    assert_eq!(t.decode(&ids, true).unwrap(), "ab ba");
    assert_eq!(t.token_text(3), Some((b"<s>".to_vec(), true)));
    assert_eq!(t.token_text(5), None);
    assert_eq!(t.decode(&[7], false).unwrap_err().code(), status::E_RANGE);
    std::fs::write(d.join("d.jsonl"), "{\"text\": \"ab\"}\n{\"text\": \"b\"}\n").unwrap();
    assert_eq!(t.encode_file(d.join("d.jsonl"), true, true).unwrap(), (vec![3, 2, 3, 1], 3));
    std::fs::write(d.join("bad.jsonl"), "{\"text\": \"ab\"}\n{\"body\": 1}\n").unwrap();
    let e = t.encode_file(d.join("bad.jsonl"), true, true).unwrap_err();
    assert_eq!(e.code(), status::E_FORMAT);
    assert!(e.to_string().contains("line 2"), "{}", e);
    std::fs::write(d.join("wp.json"), r#"{"model":{"type":"WordPiece","vocab":{"a":0}}}"#).unwrap();
    let e = Tokenizer::load(d.join("wp.json")).err().unwrap();
    assert_eq!(e.code(), status::E_UNSUPPORTED);
    assert!(e.to_string().contains("WordPiece"), "{}", e);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn golden_ids_and_round_trip() {
    let d = match common::shared_data() {
        Some(d) => d,
        None => {
            eprintln!("skip: shared data not found (set QERR_SHARED_DATA)");
            return;
        }
    };
    let text = std::fs::read(d.join("text/wikitext-2-raw-test.txt")).unwrap();
    for name in ["llama2", "qwen3"] {
        let t = Tokenizer::load(d.join("tokenizers").join(name)).unwrap();
        let want = qerr::read_tokens(d.join("tokenizers").join(name).join("wikitext-2-raw-test.u32"))
            .unwrap();
        let ids = t.encode(&text, false, true).unwrap();
        assert_eq!(ids.len(), want.len(), "{}", name);
        assert!(ids == want, "{}: ids differ", name);
        assert!(t.decode_bytes(&ids, false).unwrap() == text, "{}: round trip", name);
    }
    let t = Tokenizer::load(d.join("stories260k/tok512.bin")).unwrap();
    assert_eq!(t.encode(b"a\xffb", false, false).unwrap(),
               t.encode("a\u{fffd}b", false, false).unwrap());
}
