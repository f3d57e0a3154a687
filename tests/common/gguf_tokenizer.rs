//! The tokenizer of a GGUF file against transformers' (`tests/reference/gguf_tokenizer.py`):
//! the encodings of a set of texts, their decodings and a chat-templated prompt.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

use circuitdiff::model::Tokenizer;
use std::path::Path;

/// ASCII, digits, runs of spaces, newlines, a leading space, unicode inside and outside the
/// vocabulary (byte fallback), special and user-defined tokens inside the text, a Gemma chat
/// turn, nothing.
pub const TEXTS: [&str; 9] = [
    "Hello world",
    " the  world\n\n12 3.14 digits",
    "line one\nline two\n",
    "   It is 123, isn't it?",
    "caf\u{e9} \u{65e5}\u{672c} \u{1f389}",
    "<start_of_turn>user\nhi<think><end_of_turn>",
    "\t tabs\tand  spaces ",
    "<start_of_turn>user\nWhat is 2 + 2?<end_of_turn>\n<start_of_turn>model\n",
    "",
];

/// A Gemma-style chat template.
pub const CHAT: &str = "{{ bos_token }}{% for message in messages %}{{ '<start_of_turn>' + message['role'] + '\n' + message['content'] + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}";

pub const QUESTION: &str = "what is 12 + 3?";

/// transformers' encodings of [`TEXTS`] for the GGUF at `gguf`, written there first as
/// architecture `write` when given.
pub fn transformers(gguf: &Path, write: Option<&str>) -> serde_json::Value {
    let request = serde_json::json!({"gguf": gguf, "write": write, "texts": TEXTS,
                                     "chat": QUESTION, "chat_template": CHAT});
    serde_json::from_slice(&super::run_reference("gguf_tokenizer.py", &request)).unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// Our tokenizer against transformers' answers `r` for the same file: every text encoded with
/// and without the special tokens, both decoded as transformers decodes them, round-tripped
/// (but for a leading space); the chat prompt.
pub fn check(tokenizer: &Tokenizer, r: &serde_json::Value, what: &str) {
    for (i, text) in TEXTS.iter().enumerate() {
        let ours = tokenizer.encode(text, true).unwrap();
        assert_eq!(ours, ids(&r["ids"][i]), "{what}: {text:?}");
        let plain = tokenizer.encode(text, false).unwrap();
        assert_eq!(plain, ids(&r["plain"][i]), "{what}: {text:?} without BOS");
        assert_eq!(
            tokenizer.decode(&ours).unwrap(),
            r["decoded"][i].as_str().unwrap(),
            "{what}: decoding {text:?}"
        );
        let back = tokenizer.decode(&plain).unwrap();
        assert_eq!(
            back,
            r["plain_decoded"][i].as_str().unwrap(),
            "{what}: {text:?}"
        );
        // Llama's decoder drops one leading space, as SentencePiece does; otherwise the text
        // comes back.
        if !text.starts_with(' ') {
            assert_eq!(back, *text, "{what}: round trip");
        }
    }
    // The chat template, where the file has one.
    match r.get("chat_ids") {
        Some(want) => {
            let prompt = circuitdiff::lab::task::prompt_ids(tokenizer, QUESTION).unwrap();
            assert_eq!(prompt, ids(want), "{what}: chat prompt");
        }
        None => assert!(tokenizer.chat_template.is_none(), "{what}: a chat template"),
    }
}
