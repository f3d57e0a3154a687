//! Prompt templates (method.md §4 step 2): each model answers zero-shot with its family's
//! template, the tokenizer's own chat template, or a user-given text.
//!
//! Chat templates are the Jinja text of `tokenizer_config.json`, rendered with `minijinja` the
//! way Hugging Face `transformers` renders them: `trim_blocks` and `lstrip_blocks` on, loop
//! controls (`break`/`continue`) allowed, Python string and dict methods (`.strip()`,
//! `.startswith()`, `.items()`, …) through `minijinja-contrib`'s `pycompat`, and a
//! `raise_exception(msg)` function that aborts rendering with `msg`. `strftime_now` is not
//! defined (templates that test `strftime_now is defined` fall back to their fixed date, which
//! keeps prompts reproducible), and the `{% generation %}` tag of `transformers` is not
//! supported.

/// The deepseek-math template (method.md §4), with `{question}` for the question.
pub const DEEPSEEK_MATH: &str = "User: {question}\nPlease reason step by step, and put your final answer within \\boxed{}.\n\nAssistant:";

/// The mistral template (method.md §4), with `{question}` for the question.
pub const MISTRAL: &str = "[INST] {question}[/INST]";

/// The qwen25-math-cot template (method.md §4), with `{question}` for the question.
pub const QWEN25_MATH_COT: &str = "<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n";

/// The placeholder a custom template must contain.
pub const PLACEHOLDER: &str = "{question}";

/// The names [`Template::parse`] accepts, besides a custom text.
pub const TEMPLATE_NAMES: [&str; 5] = [
    "deepseek-math",
    "mistral",
    "qwen25-math-cot",
    "chat",
    "plain",
];

/// Everything that can go wrong while choosing or rendering a prompt.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    /// A template name that is neither known nor a custom text.
    #[error(
        "unknown prompt template `{given}`: choose deepseek-math, mistral, qwen25-math-cot, chat \
         (the tokenizer's own chat template), plain (the question alone), or a custom text \
         containing `{{question}}`"
    )]
    Unknown {
        /// The name as given.
        given: String,
    },

    /// A custom template without the `{question}` placeholder.
    #[error(
        "custom prompt template `{text}` has no `{{question}}`: put `{{question}}` where the \
         question goes"
    )]
    NoPlaceholder {
        /// The template text.
        text: String,
    },

    /// `chat` was chosen but the tokenizer has no chat template.
    #[error(
        "the tokenizer has no chat template (no `chat_template` in tokenizer_config.json), so the \
         `chat` prompt template cannot be used: choose one with --template (deepseek-math, \
         mistral, qwen25-math-cot, plain, or a text containing `{{question}}`)"
    )]
    NoChatTemplate,

    /// The chat template needed more than [`CHAT_TEMPLATE_FUEL`] steps for one prompt.
    #[error(
        "the tokenizer's chat template (tokenizer_config.json) did not finish within \
         {CHAT_TEMPLATE_FUEL} steps for one prompt (it loops too long or builds too much text); \
         choose another prompt with --template"
    )]
    ChatTemplateTooCostly,

    /// The chat template does not compile, fails while rendering, or calls `raise_exception`.
    #[error(
        "the tokenizer's chat template (tokenizer_config.json) failed: {message}; choose another \
         prompt with --template"
    )]
    ChatTemplate {
        /// The template engine's message (for `raise_exception`, the template's own).
        message: String,
    },
}

/// How a question becomes the prompt text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Template {
    /// [`DEEPSEEK_MATH`].
    DeepseekMath,
    /// [`MISTRAL`].
    Mistral,
    /// [`QWEN25_MATH_COT`].
    Qwen25MathCot,
    /// The tokenizer's own chat template (Jinja) with one user message and
    /// `add_generation_prompt = true`.
    ChatTemplate,
    /// A whole prompt text in which `{question}` is replaced by the question.
    Custom {
        /// The text, containing `{question}`.
        text: String,
    },
    /// The question alone.
    Plain,
}

impl Template {
    /// Parse a template choice: `deepseek-math`, `mistral`, `qwen25-math-cot`, `chat`, `plain`
    /// (case-insensitive), or any text containing `{question}` (a [`Template::Custom`], kept
    /// verbatim: escapes such as `\n` are not interpreted, write real newlines).
    ///
    /// # Errors
    /// [`PromptError::Unknown`] listing the choices.
    pub fn parse(s: &str) -> Result<Self, PromptError> {
        if s.contains(PLACEHOLDER) {
            return Ok(Self::Custom { text: s.to_owned() });
        }
        match s.trim().to_ascii_lowercase().as_str() {
            "deepseek-math" => Ok(Self::DeepseekMath),
            "mistral" => Ok(Self::Mistral),
            "qwen25-math-cot" => Ok(Self::Qwen25MathCot),
            "chat" => Ok(Self::ChatTemplate),
            "plain" => Ok(Self::Plain),
            _ => Err(PromptError::Unknown {
                given: s.to_owned(),
            }),
        }
    }

    /// The template's name as [`Template::parse`] accepts it; `custom` for a custom text.
    pub fn name(&self) -> String {
        match self {
            Self::DeepseekMath => "deepseek-math",
            Self::Mistral => "mistral",
            Self::Qwen25MathCot => "qwen25-math-cot",
            Self::ChatTemplate => "chat",
            Self::Custom { .. } => "custom",
            Self::Plain => "plain",
        }
        .to_owned()
    }

    /// The family's stop strings, besides the tokenizer's EOS: none for deepseek-math, `[INST]`
    /// for mistral, `<|im_end|>` and `<|endoftext|>` for qwen25-math-cot, none for the others.
    pub fn stop_strings(&self) -> Vec<String> {
        let stops: &[&str] = match self {
            Self::Mistral => &["[INST]"],
            Self::Qwen25MathCot => &["<|im_end|>", "<|endoftext|>"],
            Self::DeepseekMath | Self::ChatTemplate | Self::Custom { .. } | Self::Plain => &[],
        };
        stops.iter().map(|s| (*s).to_owned()).collect()
    }
}

/// Render the prompt text for `question`.
///
/// `chat_template` is the tokenizer's Jinja template (the `chat_template` string of
/// tokenizer_config.json; pick the default one when the file holds a list), `bos`/`eos` its
/// special-token strings, passed to the template as `bos_token`/`eos_token` (left undefined when
/// `None`). Only [`Template::ChatTemplate`] uses these three. A chat template may write the BOS
/// string itself: encode such a prompt without adding special tokens again.
///
/// # Errors
/// [`PromptError::NoChatTemplate`] when `t` is [`Template::ChatTemplate`] and `chat_template` is
/// `None` or blank, [`PromptError::ChatTemplate`] when it fails, [`PromptError::NoPlaceholder`]
/// for a custom text without `{question}`.
pub fn render(
    t: &Template,
    question: &str,
    chat_template: Option<&str>,
    bos: Option<&str>,
    eos: Option<&str>,
) -> Result<String, PromptError> {
    let fill = |text: &str| text.replace(PLACEHOLDER, question);
    match t {
        Template::DeepseekMath => Ok(fill(DEEPSEEK_MATH)),
        Template::Mistral => Ok(fill(MISTRAL)),
        Template::Qwen25MathCot => Ok(fill(QWEN25_MATH_COT)),
        Template::Plain => Ok(question.to_owned()),
        Template::Custom { text } => {
            if text.contains(PLACEHOLDER) {
                Ok(fill(text))
            } else {
                Err(PromptError::NoPlaceholder { text: text.clone() })
            }
        }
        Template::ChatTemplate => match chat_template.filter(|c| !c.trim().is_empty()) {
            Some(source) => render_chat(source, question, bos, eos),
            None => Err(PromptError::NoChatTemplate),
        },
    }
}

/// The work one chat-template render may do, in minijinja fuel (about one per instruction and
/// per 64 bytes of text made): the templates of real models use a few thousand per prompt; this
/// bounds the time (well under a second) and memory of a template written to loop or grow.
pub const CHAT_TEMPLATE_FUEL: u64 = 10_000_000;

/// Render a Hugging Face chat template with one user message and the generation prompt, within
/// [`CHAT_TEMPLATE_FUEL`].
fn render_chat(
    source: &str,
    question: &str,
    bos: Option<&str>,
    eos: Option<&str>,
) -> Result<String, PromptError> {
    use minijinja::value::Value;
    use std::collections::BTreeMap;

    let failed = |e: minijinja::Error| match e.kind() {
        minijinja::ErrorKind::OutOfFuel => PromptError::ChatTemplateTooCostly,
        _ => PromptError::ChatTemplate {
            message: e.to_string(),
        },
    };
    let mut env = minijinja::Environment::new();
    env.set_fuel(Some(CHAT_TEMPLATE_FUEL));
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
        .map_err(failed)?;
    env.set_syntax(syntax);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", raise_exception);

    let message: BTreeMap<Value, Value> = BTreeMap::from([
        (Value::from("role"), Value::from("user")),
        (Value::from("content"), Value::from(question)),
    ]);
    let mut context: BTreeMap<Value, Value> = BTreeMap::from([
        (
            Value::from("messages"),
            Value::from(vec![Value::from(message)]),
        ),
        (Value::from("add_generation_prompt"), Value::from(true)),
    ]);
    if let Some(bos) = bos {
        context.insert(Value::from("bos_token"), Value::from(bos));
    }
    if let Some(eos) = eos {
        context.insert(Value::from("eos_token"), Value::from(eos));
    }
    let template = env.template_from_str(source).map_err(failed)?;
    template.render(Value::from(context)).map_err(failed)
}

/// `raise_exception(msg)` of Hugging Face chat templates: abort rendering with `msg`.
fn raise_exception(message: String) -> Result<minijinja::value::Value, minijinja::Error> {
    Err(minijinja::Error::new(
        minijinja::ErrorKind::InvalidOperation,
        message,
    ))
}
