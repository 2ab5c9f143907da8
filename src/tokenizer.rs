//! Tokenization and chat templates.
//!
//! - From HF `tokenizer.json` (+ `tokenizer_config.json` for the chat template), loaded by the
//!   `tokenizers` crate.
//! - From GGUF `tokenizer.ggml.*` metadata, rebuilt into the same `tokenizers` pipeline that
//!   transformers builds for the file (`integrations/gguf/gguf_tokenizer_mapping.py`): byte-level
//!   BPE over the file's vocab and merges, the pre-tokenizer its `tokenizer.ggml.pre` names, and
//!   CONTROL tokens as special added tokens. Checked against transformers in
//!   `tests/tokenizer_reference.rs`.
//! - Chat templates are the model's own Jinja, rendered by minijinja with the environment
//!   transformers uses (`trim_blocks`, `lstrip_blocks`, loop controls, `raise_exception`, a
//!   Python-style `tojson`), within a bound on steps and on memory (`chat_template`).

mod chat_template;

use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokenizers::Tokenizer;

/// One chat turn, as in transformers' `messages` list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> Self {
        ChatMessage { role: role.into(), content: content.into() }
    }
}

/// A tokenizer plus what generation needs to know about it.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    chat_template: Option<String>,
    bos: Option<(u32, String)>,
    eos: Option<(u32, String)>,
    /// Prepend BOS when encoding with special tokens (GGUF `tokenizer.ggml.add_bos_token`).
    add_bos: bool,
    /// The BOS id that encoding with special tokens puts first, by our own `add_bos` (GGUF) or by
    /// `tokenizer.json`'s post-processor (HF); found once by probing.
    bos_on_encode: Option<u32>,
    /// Token ids that end generation: EOS and the usual end-of-turn markers.
    stop_ids: Vec<u32>,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer").field("vocab", &self.vocab_size()).field("bos", &self.bos).finish()
    }
}

/// Pre-tokenizer split patterns by `tokenizer.ggml.pre`, as transformers and llama.cpp use them.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GGUF token types (llama.cpp `llama_token_type`).
const TOKEN_TYPE_CONTROL: u64 = 3;
const TOKEN_TYPE_USER_DEFINED: u64 = 4;

/// GPT-2's byte → printable-char table (`bytes_to_unicode`).
fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..256u32 {
        let printable = (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        table[b as usize] = if printable {
            char::from_u32(b).unwrap_or('\0')
        } else {
            n += 1;
            char::from_u32(255 + n).unwrap_or('\0')
        };
    }
    table
}

fn pre_tokenizer_for(pre: &str) -> Result<Value> {
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    let split = |pattern: &str| {
        json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false},
            byte_level(false)
        ]})
    };
    Ok(match pre {
        // GPT-2's own regex inside ByteLevel.
        "gpt2" | "default" | "" => byte_level(true),
        // SmolLM2's tokenizer.json: each digit alone, then GPT-2 byte-level.
        "smollm" | "starcoder" | "refact" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            byte_level(true)
        ]}),
        "llama3" | "llama-v3" | "llama-bpe" | "smaug-bpe" | "dbrx" | "falcon3" => split(LLAMA3_SPLIT),
        "qwen2" | "deepseek-r1-qwen" => split(QWEN2_SPLIT),
        other => {
            return Err(Error::Tokenizer(format!(
                "GGUF pre-tokenizer `{other}` is not supported (supported: gpt2, smollm, llama-bpe, qwen2); load the model's tokenizer.json instead"
            )));
        }
    })
}

impl TextTokenizer {
    /// Rebuilds the tokenizer described by a GGUF file's `tokenizer.ggml.*` metadata.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let get = |k: &str| file.get(k);
        let model = get("tokenizer.ggml.model").and_then(|v| v.as_str()).unwrap_or("");
        if model != "gpt2" {
            return Err(Error::Tokenizer(format!(
                "GGUF tokenizer model `{model}` is not supported (only byte-level BPE, `gpt2`); load the model's tokenizer.json instead"
            )));
        }
        let tokens: Vec<&str> = get("tokenizer.ggml.tokens")
            .and_then(|v| v.as_array())
            .ok_or_else(|| Error::Tokenizer("GGUF file has no `tokenizer.ggml.tokens`".into()))?
            .iter()
            .map(|v| v.as_str().ok_or_else(|| Error::Tokenizer("`tokenizer.ggml.tokens` holds a non-string".into())))
            .collect::<Result<_>>()?;
        let merges: Vec<&str> = get("tokenizer.ggml.merges")
            .and_then(|v| v.as_array())
            .ok_or_else(|| Error::Tokenizer("GGUF file has no `tokenizer.ggml.merges`".into()))?
            .iter()
            .map(|v| v.as_str().ok_or_else(|| Error::Tokenizer("`tokenizer.ggml.merges` holds a non-string".into())))
            .collect::<Result<_>>()?;
        let token_types: Vec<u64> = get("tokenizer.ggml.token_type")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().map(|v| v.as_u64().unwrap_or(1)).collect())
            .unwrap_or_default();

        // Tokens are spelled in the byte alphabet; one that is not gets re-spelled from its UTF-8.
        let table = byte_to_char_table();
        let alphabet: std::collections::HashSet<char> = table.iter().copied().collect();
        // The BPE model is built from the vocabulary and merges directly: going through a
        // tokenizer.json text (a JSON map of every token, its text, and tokenizers' parse of it)
        // held three more copies of a 150k-token vocabulary at once, ~60 MB of a 0.5B model's peak.
        let mut vocab = tokenizers::models::bpe::Vocab::with_capacity(tokens.len());
        for (id, tok) in tokens.iter().enumerate() {
            let spelled = if tok.chars().all(|c| alphabet.contains(&c)) {
                tok.to_string()
            } else {
                tok.bytes().map(|b| table[b as usize]).collect()
            };
            vocab.insert(spelled, id as u32);
        }
        let merges = merges
            .iter()
            .enumerate()
            .map(|(rank, line)| match line.split_once(' ') {
                Some((a, b)) if !b.contains(' ') => Ok((a.to_string(), b.to_string())),
                _ => Err(Error::Tokenizer(format!("`tokenizer.ggml.merges` entry {} is not two tokens: {line:?}", rank + 1))),
            })
            .collect::<Result<Vec<_>>>()?;

        let mut added = Vec::new();
        for (tok, &ty) in tokens.iter().zip(&token_types) {
            let special = match ty {
                // A CONTROL token outside the byte alphabet is a llama.cpp mislabel: skip it.
                TOKEN_TYPE_CONTROL if tok.chars().all(|c| alphabet.contains(&c)) => true,
                TOKEN_TYPE_USER_DEFINED => false,
                _ => continue,
            };
            added.push(tokenizers::AddedToken::from(tok.to_string(), special).single_word(false).lstrip(false).rstrip(false).normalized(false));
        }

        let pre = get("tokenizer.ggml.pre").and_then(|v| v.as_str()).unwrap_or("gpt2");
        let pre_tokenizer: tokenizers::PreTokenizerWrapper = serde_json::from_value(pre_tokenizer_for(pre)?)
            .map_err(|e| Error::Tokenizer(format!("could not build the `{pre}` pre-tokenizer: {e}")))?;
        let bpe = tokenizers::models::bpe::BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| Error::Tokenizer(format!("could not build the tokenizer from GGUF metadata: {e}")))?;
        let mut inner = Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre_tokenizer));
        inner.with_decoder(Some(tokenizers::decoders::byte_level::ByteLevel::new(true, true, true)));
        // As tokenizers reads a tokenizer.json's `added_tokens`: added after the model, each
        // keeping the id the vocabulary gives its text.
        inner.add_tokens(added).map_err(|e| Error::Tokenizer(format!("could not add the GGUF special tokens: {e}")))?;

        let token_at = |key: &str| -> Option<(u32, String)> {
            let id = get(key)?.as_u64()? as usize;
            tokens.get(id).map(|t| (id as u32, t.to_string()))
        };
        let add_bos = get("tokenizer.ggml.add_bos_token").and_then(|v| v.as_bool()).unwrap_or(false);
        let chat_template = get("tokenizer.chat_template").and_then(|v| v.as_str()).map(str::to_string);
        Ok(Self::assemble(inner, chat_template, token_at("tokenizer.ggml.bos_token_id"), token_at("tokenizer.ggml.eos_token_id"), add_bos))
    }

    /// Loads HF `tokenizer.json`, with `tokenizer_config.json` for the chat template and the
    /// BOS/EOS tokens when given.
    pub fn from_hf(tokenizer_json: &[u8], tokenizer_config_json: Option<&str>) -> Result<Self> {
        let inner = Tokenizer::from_bytes(tokenizer_json)
            .map_err(|e| Error::Tokenizer(format!("tokenizer.json could not be read: {e}")))?;
        let config: Value = match tokenizer_config_json {
            Some(s) => serde_json::from_str(s)
                .map_err(|e| Error::Tokenizer(format!("tokenizer_config.json is not valid JSON: {e}")))?,
            None => Value::Null,
        };
        // Special tokens appear either as strings or as {"content": ...} objects.
        let token = |key: &str| -> Option<(u32, String)> {
            let v = config.get(key)?;
            let s = v.as_str().or_else(|| v.get("content")?.as_str())?;
            inner.token_to_id(s).map(|id| (id, s.to_string()))
        };
        let chat_template = match config.get("chat_template") {
            Some(Value::String(s)) => Some(s.clone()),
            // A list of named templates: take the default one.
            Some(Value::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .and_then(|t| t.get("template")?.as_str().map(str::to_string)),
            _ => None,
        };
        // tokenizer.json's post-processor already adds BOS where the model wants it.
        let (bos, eos) = (token("bos_token"), token("eos_token"));
        Ok(Self::assemble(inner, chat_template, bos, eos, false))
    }

    fn assemble(
        inner: Tokenizer,
        chat_template: Option<String>,
        bos: Option<(u32, String)>,
        eos: Option<(u32, String)>,
        add_bos: bool,
    ) -> Self {
        let mut stop_ids: Vec<u32> = eos.iter().map(|(id, _)| *id).collect();
        for marker in ["<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>"] {
            if let Some(id) = inner.token_to_id(marker)
                && !stop_ids.contains(&id) {
                    stop_ids.push(id);
                }
        }
        let mut tokenizer = TextTokenizer { inner, chat_template, bos, eos, add_bos, bos_on_encode: None, stop_ids };
        tokenizer.bos_on_encode = tokenizer.probe_bos();
        tokenizer
    }

    /// Whether encoding with special tokens prepends BOS: compare a probe text with and without.
    fn probe_bos(&self) -> Option<u32> {
        let (bos, _) = self.bos.as_ref()?;
        let with = self.encode("a", true).ok()?;
        let without = self.encode("a", false).ok()?;
        (with.len() == without.len() + 1 && with.first() == Some(bos) && with[1..] == without[..]).then_some(*bos)
    }

    /// Token ids of `text`. With `add_special_tokens`, BOS is prepended if the model wants one.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| Error::Tokenizer(format!("could not tokenize the text: {e}")))?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        if add_special_tokens && self.add_bos
            && let Some((bos, _)) = &self.bos {
                ids.push(*bos);
            }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    /// Text of `ids`; special tokens are kept unless `skip_special_tokens`.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| Error::Tokenizer(format!("could not decode token ids: {e}")))
    }

    /// The BOS id when encoding with special tokens prepends one (used by scoring and prompts),
    /// whether the GGUF metadata or an HF post-processor asks for it.
    pub fn bos_prepended(&self) -> Option<u32> {
        self.bos_on_encode
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Ids that end generation.
    pub fn stop_ids(&self) -> &[u32] {
        &self.stop_ids
    }

    /// The id that right-pads a batch: the first stop id (padding is never scored or attended
    /// to by real positions, so any id works; this one is always in the vocabulary).
    pub fn pad_id(&self) -> u32 {
        self.stop_ids.first().copied().unwrap_or(0)
    }

    pub fn has_chat_template(&self) -> bool {
        self.chat_template.is_some()
    }

    /// Renders the model's own chat template, as transformers' `apply_chat_template(messages,
    /// tokenize=False, add_generation_prompt=...)` does.
    pub fn apply_chat_template(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let source = self.chat_template.as_deref().ok_or_else(|| {
            Error::Template("this model has no chat template; use a plain prompt instead of --chat".into())
        })?;
        let bos = self.bos.as_ref().map(|(_, s)| s.as_str()).unwrap_or("");
        let eos = self.eos.as_ref().map(|(_, s)| s.as_str()).unwrap_or("");
        let context = minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => bos,
            eos_token => eos,
        };
        chat_template::render(source, context).map_err(|failure| match failure {
            chat_template::Failure::OutOfFuel => Error::Template(format!(
                "this model's chat template did more than {} steps of work for one prompt and was stopped; the template is broken or hostile, so use a plain prompt or another model file",
                chat_template::TEMPLATE_FUEL
            )),
            chat_template::Failure::OverBudget => Error::Template(format!(
                "this model's chat template built more than {} MiB of text for one prompt and was stopped; the template is broken or hostile, so use a plain prompt or another model file",
                chat_template::TEMPLATE_BUDGET_MIB
            )),
            chat_template::Failure::Refused(refusal) => Error::Template(format!(
                "this model's chat template was stopped: it {refusal}, and printing or dropping such a value would overflow the stack; the template is broken or hostile, so use a plain prompt or another model file"
            )),
            chat_template::Failure::Other(e) => Error::Template(e.to_string()),
        })
    }

    /// Checks that every token id fits the model's embedding matrix.
    pub fn check_fits(&self, model_vocab_size: usize) -> Result<()> {
        let n = self.vocab_size();
        if n > model_vocab_size {
            return Err(Error::Tokenizer(format!(
                "the tokenizer has {n} tokens but the model's embedding has {model_vocab_size} rows: this tokenizer does not belong to this model"
            )));
        }
        Ok(())
    }
}

/// `tojson` as transformers defines it for chat templates (`chat_template_utils.py`):
/// `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`, which is
/// `json.dumps` with those arguments, positional (in that order, as in Python: `tojson(4)` sets
/// `ensure_ascii`, not the indent) or by keyword (`tojson(indent=4)`, as Llama 3.1's template
/// writes). Unlike minijinja's own, it does not escape `<`, `>` and `&`.
fn python_tojson(value: &minijinja::Value, args: &[minijinja::Value]) -> std::result::Result<minijinja::Value, minijinja::Error> {
    let (positional, kwargs) = match args.split_last() {
        Some((last, rest)) if last.is_kwargs() => (rest, Some(last)),
        _ => (args, None),
    };
    let style = JsonStyle::parse(positional, kwargs)?;
    let v: Value = serde_json::to_value(value)
        .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string()))?;
    let mut out = String::new();
    write_python_json(&v, &style, 0, &mut out);
    Ok(minijinja::Value::from_safe_string(out))
}

/// How `json.dumps` lays JSON out, from `tojson`'s arguments. `sort_keys` is accepted and changes
/// nothing: keys always come sorted (minijinja's maps and serde_json's are ordered by key).
struct JsonStyle {
    /// Characters outside printable ASCII written as `\uXXXX`.
    ensure_ascii: bool,
    /// Each level's indent, when laid out on lines.
    indent: Option<JsonIndent>,
    item_separator: String,
    key_separator: String,
}

enum JsonIndent {
    /// `indent=n` (Python writes `' ' * n`: none for 0 or less).
    Spaces(usize),
    /// `indent='\t'`.
    Text(String),
}

impl JsonIndent {
    fn width(&self) -> usize {
        match self {
            JsonIndent::Spaces(n) => *n,
            JsonIndent::Text(s) => s.len(),
        }
    }
}

impl JsonStyle {
    const NAMES: [&str; 4] = ["ensure_ascii", "indent", "separators", "sort_keys"];

    /// From `tojson`'s arguments after the value.
    fn parse(positional: &[minijinja::Value], kwargs: Option<&minijinja::Value>) -> std::result::Result<Self, minijinja::Error> {
        use minijinja::{Error as E, ErrorKind::InvalidOperation, ErrorKind::TooManyArguments};
        if positional.len() > Self::NAMES.len() {
            return Err(E::new(TooManyArguments, "tojson takes at most 4 arguments after the value: ensure_ascii, indent, separators, sort_keys"));
        }
        let mut given: [Option<minijinja::Value>; 4] = Default::default();
        for (slot, value) in given.iter_mut().zip(positional) {
            *slot = Some(value.clone());
        }
        if let Some(kwargs) = kwargs {
            for name in kwargs.try_iter()? {
                let name = name.as_str().unwrap_or_default().to_string();
                let Some(index) = Self::NAMES.iter().position(|known| *known == name) else {
                    return Err(E::new(TooManyArguments, format!("tojson has no argument `{name}` (it takes ensure_ascii, indent, separators, sort_keys)")));
                };
                if given[index].is_some() {
                    return Err(E::new(TooManyArguments, format!("tojson got `{name}` twice")));
                }
                given[index] = Some(kwargs.get_attr(&name)?);
            }
        }
        let [ensure_ascii, indent, separators, _sort_keys] = given.map(|v| v.filter(|v| !v.is_none() && !v.is_undefined()));
        let indent = match indent {
            None => None,
            Some(text) if text.as_str().is_some() => Some(JsonIndent::Text(text.as_str().unwrap_or_default().to_string())),
            Some(flag) if flag.kind() == minijinja::value::ValueKind::Bool => Some(JsonIndent::Spaces(flag.is_true() as usize)),
            Some(n) if n.is_integer() => Some(JsonIndent::Spaces(n.as_usize().unwrap_or_else(|| {
                // Negative: no indent, as Python's `' ' * n`; beyond usize: more than any budget.
                if n.as_i64().is_some_and(|n| n < 0) { 0 } else { usize::MAX }
            }))),
            Some(other) => return Err(E::new(InvalidOperation, format!("tojson's indent must be a whole number or a string, not {}", other.kind()))),
        };
        let (item_separator, key_separator) = match separators {
            None if indent.is_some() => (",".to_string(), ": ".to_string()),
            None => (", ".to_string(), ": ".to_string()),
            Some(pair) => {
                let strings: Vec<String> = pair.try_iter().map(|items| items.filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default();
                match <[String; 2]>::try_from(strings) {
                    Ok([item, key]) if pair.len() == Some(2) => (item, key),
                    _ => return Err(E::new(InvalidOperation, "tojson's separators must be a pair of strings, such as (',', ': ')")),
                }
            }
        };
        Ok(JsonStyle { ensure_ascii: ensure_ascii.is_some_and(|v| v.is_true()), indent, item_separator, key_separator })
    }
}

fn write_python_json(v: &Value, style: &JsonStyle, depth: usize, out: &mut String) {
    let newline = |out: &mut String, depth: usize| {
        if let Some(indent) = &style.indent {
            out.push('\n');
            for _ in 0..depth {
                match indent {
                    JsonIndent::Spaces(n) => out.extend(std::iter::repeat_n(' ', *n)),
                    JsonIndent::Text(s) => out.push_str(s),
                }
            }
        }
    };
    match v {
        Value::Array(items) if !items.is_empty() => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&style.item_separator);
                }
                newline(out, depth + 1);
                write_python_json(item, style, depth + 1, out);
            }
            newline(out, depth);
            out.push(']');
        }
        Value::Object(map) if !map.is_empty() => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(&style.item_separator);
                }
                newline(out, depth + 1);
                write_json_string(k, style.ensure_ascii, out);
                out.push_str(&style.key_separator);
                write_python_json(item, style, depth + 1, out);
            }
            newline(out, depth);
            out.push('}');
        }
        Value::String(s) => write_json_string(s, style.ensure_ascii, out),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => out.push_str(&python_float(f)),
            _ => out.push_str(&n.to_string()),
        },
        other => out.push_str(&other.to_string()),
    }
}

/// A JSON string as Python's `json` writes it: `\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`, other
/// control characters as `\u00XX`, and with `ensure_ascii` everything outside `' '..='~'` as
/// UTF-16 `\uXXXX` escapes.
fn write_json_string(s: &str, ensure_ascii: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c < ' ' || (ensure_ascii && c > '~') => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A float as Python's `repr` writes it (and so `json.dumps`): the shortest digits that read
/// back the same, positional from 1e-4 up to below 1e16 (`1.0`, `0.0001`), scientific outside
/// (`1e+16`, `1e-05`). serde_json writes `1e16` and `1e-5`.
fn python_float(f: f64) -> String {
    if !f.is_finite() {
        // serde_json turns these into null before they get here; for completeness.
        return if f.is_nan() { "NaN".into() } else if f > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    // Rust's `{:e}` gives the shortest round-trip digits: `-1.2345e-7`.
    let scientific = format!("{:e}", f.abs());
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let sign = if f.is_sign_negative() { "-" } else { "" };
    // Where the point goes after the first `point` digits.
    let point = exponent + 1;
    if (-3..=16).contains(&point) {
        let body = if point <= 0 {
            format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
        } else if point as usize >= digits.len() {
            format!("{digits}{}.0", "0".repeat(point as usize - digits.len()))
        } else {
            format!("{}.{}", &digits[..point as usize], &digits[point as usize..])
        };
        format!("{sign}{body}")
    } else {
        let fraction = if digits.len() > 1 { format!(".{}", &digits[1..]) } else { String::new() };
        let exponent_sign = if exponent < 0 { "-" } else { "+" };
        format!("{sign}{}{fraction}e{exponent_sign}{:02}", &digits[..1], exponent.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_matches_gpt2() {
        let t = byte_to_char_table();
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[b'A' as usize], 'A');
        let unique: std::collections::HashSet<char> = t.iter().copied().collect();
        assert_eq!(unique.len(), 256);
    }

    #[test]
    fn tojson_uses_python_separators() {
        let v = minijinja::Value::from_serialize(json!({"a": [1, "x<y"], "b": null}));
        assert_eq!(python_tojson(&v, &[]).unwrap().to_string(), r#"{"a": [1, "x<y"], "b": null}"#);
    }

    #[test]
    fn a_template_that_never_ends_is_stopped() {
        let json = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,"pre_tokenizer":null,"post_processor":null,"decoder":null,
            "model":{"type":"WordLevel","vocab":{"a":0,"<unk>":1},"unk_token":"<unk>"}}"#;
        let hostile = "{% for i in range(10000) %}{% for j in range(10000) %}{{ i }}{% endfor %}{% endfor %}";
        let config = json!({ "chat_template": hostile }).to_string();
        let tok = TextTokenizer::from_hf(json.as_bytes(), Some(&config)).unwrap();
        let started = std::time::Instant::now();
        let err = tok.apply_chat_template(&[ChatMessage::new("user", "hi")], true).unwrap_err().to_string();
        assert!(err.contains("was stopped"), "{err}");
        assert!(started.elapsed().as_secs() < 10, "refused within seconds");
        let fine = json!({ "chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}" }).to_string();
        let tok = TextTokenizer::from_hf(json.as_bytes(), Some(&fine)).unwrap();
        assert_eq!(tok.apply_chat_template(&[ChatMessage::new("user", "hi")], false).unwrap(), "hi");
    }

    /// A two-word tokenizer whose chat template is `template`.
    fn with_template(template: &str) -> TextTokenizer {
        let json = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,"pre_tokenizer":null,"post_processor":null,"decoder":null,
            "model":{"type":"WordLevel","vocab":{"a":0,"<unk>":1},"unk_token":"<unk>"}}"#;
        TextTokenizer::from_hf(json.as_bytes(), Some(&json!({ "chat_template": template }).to_string())).unwrap()
    }

    /// Templates that build ever more text or list slots, step by step: each is refused with the
    /// memory bound's sentence, quickly, before it builds much more than the budget.
    #[test]
    fn templates_that_build_too_much_are_stopped() {
        // A loop's `set` does not outlive the iteration: growth goes through a namespace.
        let doubling = |step: &str| {
            format!("{{% set ns = namespace(s='x', l=['x']) %}}{{% for i in range(64) %}}{{% set ns.s = {step} %}}{{% endfor %}}{{{{ ns.s|length }}}}")
        };
        let literal = format!("{{% for i in range(100000) %}}{{% for j in range(100000) %}}{}{{% endfor %}}{{% endfor %}}", "L".repeat(2000));
        let bombs = [
            ("~ doubling", doubling("ns.s ~ ns.s")),
            ("+ doubling", doubling("ns.s + ns.s")),
            ("* doubling", doubling("ns.s * 2")),
            ("* by a large count", "{% set n = 90000000 %}{{ ('x' * n)|length }}".to_string()),
            ("* folded while compiling", "{{ ('x' * 90000000)|length }}".to_string()),
            ("format doubling", doubling("'%s%s'|format(ns.s, ns.s)")),
            ("str.format doubling", doubling("'{0}{0}'.format(ns.s)")),
            ("replace growth", doubling("ns.s|replace('x', 'xx')")),
            ("str.replace growth", doubling("ns.s.replace('x', 'xx')")),
            ("capture doubling", "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set y %}{{ ns.s }}{{ ns.s }}{% endset %}{% set ns.s = y %}{% endfor %}".to_string()),
            ("Fibonacci", "{% set ns = namespace(a='x', b='x') %}{% for i in range(200) %}{% set c = ns.a ~ ns.b %}{% set ns.a = ns.b %}{% set ns.b = c %}{% endfor %}".to_string()),
            ("list doubling", "{% set ns = namespace(l=['x']) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|join }}".to_string()),
            ("recursive macro doubling", "{% macro d(n) %}{% if n == 0 %}x{% else %}{% set s = d(n - 1) %}{{ s }}{{ s }}{% endif %}{% endmacro %}{{ d(64)|length }}".to_string()),
            ("a large literal, many times", literal),
            // 30 levels: a namespace may hold 32 (40 are refused as too deep, before printing).
            ("a shared list printed", "{% set ns = namespace(l=['x' * 1000]) %}{% for i in range(30) %}{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l }}".to_string()),
            ("a shared list as JSON", "{% set ns = namespace(l=['x' * 1000]) %}{% for i in range(30) %}{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l|tojson }}".to_string()),
            ("batches of a trillion", "{{ [1]|batch(1000000000000)|list }}".to_string()),
            ("a billion-wide field", "{{ '%1000000000s'|format('x') }}".to_string()),
            ("a list repeated lazily", "{{ ([''] * 1000000000000000)|join }}".to_string()),
        ];
        for (name, template) in bombs {
            let started = std::time::Instant::now();
            let result = with_template(&template).apply_chat_template(&[ChatMessage::new("user", "hi")], true);
            let Err(Error::Template(message)) = result else { panic!("{name}: {result:?}") };
            let bound = format!("built more than {} MiB", chat_template::TEMPLATE_BUDGET_MIB);
            assert!(message.contains(&bound), "{name}: {message}");
            assert!(started.elapsed().as_secs_f64() < 1.0, "{name}: took {:?}", started.elapsed());
        }
    }

    /// Templates whose values would nest too deep or contain themselves, which printing,
    /// comparing or dropping would follow until the stack overflows (a process abort; in the
    /// browser a trap that takes the loaded model with it), end in a Template error that says
    /// which rule they broke. Run on a 1 MiB stack, wasm32's default.
    #[test]
    fn templates_that_nest_too_deep_or_contain_themselves_are_stopped() {
        use chat_template::Refusal::{Cycle, TooDeep, TooDeepInNamespace};
        let in_a_loop = |start: &str, step: &str, then: &str| {
            format!("{{% set ns = namespace(l={start}) %}}{{% for i in range(100000) %}}{{% set ns.l = {step} %}}{{% endfor %}}{then}")
        };
        let statements = |start: &str, step: &str, times: usize| format!("{{% set x = {start} %}}{}{{{{ x }}}}", step.repeat(times));
        let refused = [
            ("a namespace holding itself", "{% set ns = namespace() %}{% set ns.x = ns %}{{ ns }}".to_string(), Cycle),
            ("a namespace holding itself in a map in a list", "{% set ns = namespace() %}{% set ns.x = [1, {'a': ns}] %}{{ ns }}".to_string(), Cycle),
            ("two namespaces holding each other", "{% set a = namespace() %}{% set b = namespace() %}{% set a.x = b %}{% set b.y = a %}{{ a }}".to_string(), Cycle),
            ("a namespace made holding one", "{% set a = namespace() %}{% set b = namespace(x=[a]) %}{% set a.y = b %}{{ a }}".to_string(), Cycle),
            ("loop.changed() keeping its loop", "{% for i in [1, 2] %}{{ loop.changed(loop) }}{% endfor %}".to_string(), Cycle),
            ("a loop in a namespace", "{% set ns = namespace() %}{% for i in [1] %}{% set ns.l = loop %}{{ loop.changed(ns) }}{% endfor %}".to_string(), Cycle),
            ("a list nested in a loop", in_a_loop("[]", "[ns.l]", "{{ ns.l }}"), TooDeepInNamespace),
            ("a map nested in a loop", in_a_loop("{}", "{'a': ns.l}", "{{ ns.l == ns.l }}"), TooDeepInNamespace),
            ("dict() nested in a loop", in_a_loop("1", "dict(a=ns.l)", ""), TooDeepInNamespace),
            ("zips nested in a loop", in_a_loop("[1]", "ns.l|zip", "{{ ns.l|list }}"), TooDeepInNamespace),
            ("a list nested by statements", statements("1", "{% set x = [x] %}", 100), TooDeep),
            ("keyword arguments nested by statements", statements("1", "{% set x = dict(k=x) %}", 100), TooDeep),
            ("batches nested by statements", statements("[1]", "{% set x = x|batch(1) %}", 100), TooDeep),
            ("a list nested by recursion", "{% macro m(x, n) %}{% if n > 0 %}{{ m([[x]], n - 1) }}{% else %}{{ x }}{% endif %}{% endmacro %}{{ m(1, 200) }}".to_string(), TooDeep),
        ];
        // Lazy views of views (slices, repeats, zips, chains) are copied, and so are views of
        // namespaces, which would otherwise show each other.
        let rendered = [
            ("slices of slices", in_a_loop("[1]", "ns.l[0:]", "{{ ns.l }}").replace("100000", "20000"), "[1]"),
            ("repeats of repeats", in_a_loop("[1]", "ns.l * 1", "{{ ns.l }}").replace("100000", "20000"), "[1]"),
            ("chains of maps", in_a_loop("{}", "ns.l|chain({'a': 1})", "{{ ns.l }}").replace("100000", "20000"), r#"{"a": 1}"#),
            ("namespaces viewing each other", "{% set a = namespace() %}{% set b = namespace() %}{% set a.x = b.items() %}{% set b.y = a.items() %}{{ a }} {{ b }}".to_string(), r#"{"x": []} {"y": [["x", []]]}"#),
            ("a list 64 deep", statements("1", "{% set x = [x] %}", 64).replace("{{ x }}", "{{ x == x }} {{ x|tojson|length }}"), "True 129"),
            ("a namespace 32 deep in a list 31 deep", format!("{{% set ns = namespace(l={}1{}) %}}{{% set x = ns %}}{}{{{{ x|length }}}}", "[".repeat(32), "]".repeat(32), "{% set x = [x] %}".repeat(31)), "1"),
        ];
        // Recursion is bounded by minijinja's limit of 500 frames.
        let recursion = [
            ("a macro calling itself", "{% macro m(n) %}{{ m(n + 1) }}{% endmacro %}{{ m(0) }}"),
            ("caller() calling itself", "{% macro m() %}{{ caller() }}{% endmacro %}{% macro r(n) %}{% call m() %}{{ r(n + 1) }}{% endcall %}{% endmacro %}{{ r(0) }}"),
            ("a recursive loop", "{% for x in [1] recursive %}{{ loop([x]) }}{% endfor %}"),
        ];
        let checks = std::thread::Builder::new().stack_size(1 << 20).spawn(move || {
            let render = |template: &str| with_template(template).apply_chat_template(&[ChatMessage::new("user", "hi")], true);
            for (name, template, refusal) in refused {
                let started = std::time::Instant::now();
                let result = render(&template);
                let Err(Error::Template(message)) = result else { panic!("{name}: {result:?}") };
                assert!(message.contains(&refusal.to_string()) && message.contains("was stopped"), "{name}: {message}");
                assert!(started.elapsed().as_secs_f64() < 1.0, "{name}: took {:?}", started.elapsed());
            }
            for (name, template, expected) in rendered {
                assert_eq!(render(&template).unwrap(), expected, "{name}");
            }
            for (name, template) in recursion {
                let Err(Error::Template(message)) = render(template) else { panic!("{name} was not stopped") };
                assert!(message.contains("recursion limit exceeded"), "{name}: {message}");
            }
        });
        checks.unwrap().join().unwrap();
    }

    /// `tojson` writes what transformers' own writes for chat templates, `json.dumps(x,
    /// ensure_ascii=False, indent=None, separators=None, sort_keys=False)` with the arguments
    /// given positionally (in that order) or by keyword, as Llama 3.1's `tojson(indent=4)`.
    #[test]
    fn tojson_writes_what_transformers_does() {
        // The expected strings were printed by ~/.cache/cqa-studio/venv-ref/bin/python with
        //   json.dumps(tool, ensure_ascii=..., indent=..., separators=..., sort_keys=True)
        // for this `tool` (as a Python dict: `true`/`none` as True/None). sort_keys because
        // minijinja's maps are ordered by key, which Python's dicts match when so sorted.
        let tool = r#"{"type": "function", "function": {"name": "get_weather", "description": "The weather at \"a\" place\tnow", "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Zürich", "東京", "😀"]}, "days": {"type": "integer", "minimum": 1, "maximum": 1e16, "step": 0.5}}, "required": ["city"], "strict": true, "extra": none, "empty": [], "nothing": {}}}}"#;
        let cases = [
            ("tojson(indent=4)", "{\n    \"function\": {\n        \"description\": \"The weather at \\\"a\\\" place\\tnow\",\n        \"name\": \"get_weather\",\n        \"parameters\": {\n            \"empty\": [],\n            \"extra\": null,\n            \"nothing\": {},\n            \"properties\": {\n                \"city\": {\n                    \"enum\": [\n                        \"Zürich\",\n                        \"東京\",\n                        \"😀\"\n                    ],\n                    \"type\": \"string\"\n                },\n                \"days\": {\n                    \"maximum\": 1e+16,\n                    \"minimum\": 1,\n                    \"step\": 0.5,\n                    \"type\": \"integer\"\n                }\n            },\n            \"required\": [\n                \"city\"\n            ],\n            \"strict\": true,\n            \"type\": \"object\"\n        }\n    },\n    \"type\": \"function\"\n}"),
            ("tojson", "{\"function\": {\"description\": \"The weather at \\\"a\\\" place\\tnow\", \"name\": \"get_weather\", \"parameters\": {\"empty\": [], \"extra\": null, \"nothing\": {}, \"properties\": {\"city\": {\"enum\": [\"Zürich\", \"東京\", \"😀\"], \"type\": \"string\"}, \"days\": {\"maximum\": 1e+16, \"minimum\": 1, \"step\": 0.5, \"type\": \"integer\"}}, \"required\": [\"city\"], \"strict\": true, \"type\": \"object\"}}, \"type\": \"function\"}"),
            ("tojson(ensure_ascii=true, indent='\\t')", "{\n\t\"function\": {\n\t\t\"description\": \"The weather at \\\"a\\\" place\\tnow\",\n\t\t\"name\": \"get_weather\",\n\t\t\"parameters\": {\n\t\t\t\"empty\": [],\n\t\t\t\"extra\": null,\n\t\t\t\"nothing\": {},\n\t\t\t\"properties\": {\n\t\t\t\t\"city\": {\n\t\t\t\t\t\"enum\": [\n\t\t\t\t\t\t\"Z\\u00fcrich\",\n\t\t\t\t\t\t\"\\u6771\\u4eac\",\n\t\t\t\t\t\t\"\\ud83d\\ude00\"\n\t\t\t\t\t],\n\t\t\t\t\t\"type\": \"string\"\n\t\t\t\t},\n\t\t\t\t\"days\": {\n\t\t\t\t\t\"maximum\": 1e+16,\n\t\t\t\t\t\"minimum\": 1,\n\t\t\t\t\t\"step\": 0.5,\n\t\t\t\t\t\"type\": \"integer\"\n\t\t\t\t}\n\t\t\t},\n\t\t\t\"required\": [\n\t\t\t\t\"city\"\n\t\t\t],\n\t\t\t\"strict\": true,\n\t\t\t\"type\": \"object\"\n\t\t}\n\t},\n\t\"type\": \"function\"\n}"),
            ("tojson(true, 2, (',', ':'))", "{\n  \"function\":{\n    \"description\":\"The weather at \\\"a\\\" place\\tnow\",\n    \"name\":\"get_weather\",\n    \"parameters\":{\n      \"empty\":[],\n      \"extra\":null,\n      \"nothing\":{},\n      \"properties\":{\n        \"city\":{\n          \"enum\":[\n            \"Z\\u00fcrich\",\n            \"\\u6771\\u4eac\",\n            \"\\ud83d\\ude00\"\n          ],\n          \"type\":\"string\"\n        },\n        \"days\":{\n          \"maximum\":1e+16,\n          \"minimum\":1,\n          \"step\":0.5,\n          \"type\":\"integer\"\n        }\n      },\n      \"required\":[\n        \"city\"\n      ],\n      \"strict\":true,\n      \"type\":\"object\"\n    }\n  },\n  \"type\":\"function\"\n}"),
            ("tojson(indent=0, sort_keys=true)", "{\n\"function\": {\n\"description\": \"The weather at \\\"a\\\" place\\tnow\",\n\"name\": \"get_weather\",\n\"parameters\": {\n\"empty\": [],\n\"extra\": null,\n\"nothing\": {},\n\"properties\": {\n\"city\": {\n\"enum\": [\n\"Zürich\",\n\"東京\",\n\"😀\"\n],\n\"type\": \"string\"\n},\n\"days\": {\n\"maximum\": 1e+16,\n\"minimum\": 1,\n\"step\": 0.5,\n\"type\": \"integer\"\n}\n},\n\"required\": [\n\"city\"\n],\n\"strict\": true,\n\"type\": \"object\"\n}\n},\n\"type\": \"function\"\n}"),
        ];
        let render = |template: &str| with_template(template).apply_chat_template(&[ChatMessage::new("user", "hi")], false);
        for (filter, expected) in cases {
            let rendered = render(&format!("{{% set tool = {tool} %}}{{{{ tool|{filter} }}}}"));
            assert_eq!(rendered.unwrap(), expected, "{filter}");
        }
        // Python's float formatting: json.dumps([1e16, 1e-05, 0.0001, 123456789.0, -0.0, 1.0, 2,
        // "\u0001\u007f\b"], ensure_ascii=True).
        let numbers = render("{{ [1e16, 1e-05, 0.0001, 123456789.0, -0.0, 1.0, 2, '\\u0001\\u007f\\b']|tojson(ensure_ascii=true) }}");
        assert_eq!(numbers.unwrap(), "[1e+16, 1e-05, 0.0001, 123456789.0, -0.0, 1.0, 2, \"\\u0001\\u007f\\b\"]");
        // Arguments Python would refuse are refused, naming the argument.
        for (filter, named) in [("tojson(indnt=4)", "no argument `indnt`"), ("tojson(false, 2, indent=4)", "`indent` twice"), ("tojson(indent=1.5)", "indent must be")] {
            let Err(Error::Template(message)) = render(&format!("{{{{ [1]|{filter} }}}}")) else { panic!("{filter} was accepted") };
            assert!(message.contains(named), "{filter}: {message}");
        }
    }

    #[test]
    fn unknown_pre_tokenizer_is_named() {
        let err = pre_tokenizer_for("mystery").unwrap_err().to_string();
        assert!(err.contains("`mystery`"), "{err}");
    }
}
