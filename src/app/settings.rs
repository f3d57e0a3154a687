//! Settings kept between runs in eframe's storage (unless `--no-persist`): theme, recent
//! results and models, the model slots, the study form and view options. Never results.

use super::views::View;
use crate::attribution::Level;
use crate::report::circuit::Mode;
use crate::side::PerSide;
use crate::study::dir::StudyConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Storage key of the settings.
pub const KEY: &str = "circuitdiff-settings";
/// Storage key of the settings' format version; another version is ignored.
pub const VERSION_KEY: &str = "circuitdiff-settings-version";
/// The current format version.
pub const VERSION: u32 = 2;

/// How many recent entries are kept.
const RECENT: usize = 10;

/// Where a study's models run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum DeviceChoice {
    #[default]
    Cpu,
    Cuda,
    Metal,
}

impl DeviceChoice {
    /// The devices this build supports and this machine has (a GPU is listed when its first
    /// device opens; probed once per process).
    pub fn available() -> &'static [Self] {
        static FOUND: std::sync::OnceLock<Vec<DeviceChoice>> = std::sync::OnceLock::new();
        FOUND.get_or_init(|| {
            let mut v = vec![Self::Cpu];
            if cfg!(feature = "cuda") && crate::model::open_device("cuda").is_ok() {
                v.push(Self::Cuda);
            }
            if cfg!(feature = "metal") && crate::model::open_device("metal").is_ok() {
                v.push(Self::Metal);
            }
            v
        })
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Cpu => "CPU",
            Self::Cuda => "CUDA",
            Self::Metal => "Metal",
        }
    }
}

/// The study form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StudyForm {
    /// A JSONL path or `builtin:arith[?…]`.
    pub dataset: String,
    /// Empty: the tokenizer's chat template when it has one, else plain; else a template name
    /// or a text with `{question}`.
    pub template: String,
    pub n: usize,
    pub alpha: f64,
    pub seed: u64,
    pub max_new_tokens: usize,
    pub heads: bool,
    /// Pairs that get exact edge effects and faithfulness curves (method.md §7), unless
    /// `exact_all`; 0 turns the check off.
    pub exact_samples: usize,
    pub exact_all: bool,
    /// Top edges by |S| (and as many random ones) per checked pair.
    pub exact_top: usize,
    pub device: DeviceChoice,
    /// Output folder; empty: a new folder under the app's data folder.
    pub out: String,
}

impl StudyForm {
    /// The graph level the form asks for.
    pub fn level(&self) -> Level {
        if self.heads {
            Level::Head
        } else {
            Level::Block
        }
    }
}

impl Default for StudyForm {
    fn default() -> Self {
        Self {
            dataset: StudyConfig::DEFAULT_DATASET.into(),
            template: String::new(),
            n: 100,
            alpha: 0.05,
            seed: 42,
            max_new_tokens: StudyConfig::DEFAULT_MAX_NEW_TOKENS,
            heads: false,
            exact_samples: 20,
            exact_all: false,
            exact_top: 32,
            device: DeviceChoice::Cpu,
            out: String::new(),
        }
    }
}

/// Everything persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub dark: bool,
    /// Results directories opened, most recent first.
    pub recent_results: Vec<PathBuf>,
    /// Model specs inspected, most recent first.
    pub recent_models: Vec<String>,
    /// The base and tuned slots.
    pub models: PerSide<String>,
    pub study: StudyForm,
    /// The fine-tune form.
    pub tune: super::tune::TuneForm,
    pub view: View,
    pub mode: Mode,
    pub top_k: usize,
    pub log_y: bool,
    /// Heatmap colour scales kept across studies.
    pub heatmap_scale: super::views::heatmap::FixedScale,
    /// The lab folder of the training view (default: the bundled model zoo).
    pub lab: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            dark: true,
            recent_results: Vec::new(),
            recent_models: Vec::new(),
            models: Default::default(),
            study: StudyForm::default(),
            tune: Default::default(),
            view: View::Graph,
            mode: Mode::Base,
            top_k: 300,
            log_y: true,
            heatmap_scale: Default::default(),
            lab: None,
        }
    }
}

fn push_recent<T: PartialEq>(list: &mut Vec<T>, item: T) {
    list.retain(|x| *x != item);
    list.insert(0, item);
    list.truncate(RECENT);
}

impl Settings {
    pub fn add_recent_results(&mut self, dir: PathBuf) {
        push_recent(&mut self.recent_results, dir);
    }

    pub fn add_recent_model(&mut self, spec: String) {
        push_recent(&mut self.recent_models, spec);
    }

    /// Read from eframe's storage; `None` when absent, unreadable or of another version.
    pub fn load(storage: &dyn eframe::Storage) -> Option<Self> {
        let version: Option<u32> = eframe::get_value(storage, VERSION_KEY);
        if version != Some(VERSION) {
            if version.is_some() {
                log::warn!("settings of another version ignored (expected after an upgrade)");
            }
            return None;
        }
        eframe::get_value(storage, KEY)
    }

    pub fn save(&self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, VERSION_KEY, &VERSION);
        eframe::set_value(storage, KEY, self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eframe::Storage as _;

    #[test]
    fn recent_lists_are_unique_newest_first_and_bounded() {
        let mut s = Settings::default();
        for i in 0..12 {
            s.add_recent_model(format!("m{i}"));
        }
        s.add_recent_model("m5".into());
        assert_eq!(s.recent_models.len(), RECENT);
        assert_eq!(s.recent_models[0], "m5");
        assert_eq!(s.recent_models.iter().filter(|m| *m == "m5").count(), 1);
    }

    #[derive(Default)]
    struct Memory(std::collections::HashMap<String, String>);

    impl eframe::Storage for Memory {
        fn get_string(&self, key: &str) -> Option<String> {
            self.0.get(key).cloned()
        }

        fn set_string(&mut self, key: &str, value: String) {
            self.0.insert(key.to_owned(), value);
        }

        fn remove_string(&mut self, key: &str) {
            self.0.remove(key);
        }

        fn flush(&mut self) {}
    }

    #[test]
    fn settings_round_trip_and_fill_missing_fields() {
        let mut storage = Memory::default();
        assert_eq!(Settings::load(&storage), None);
        let mut s = Settings::default();
        s.study.n = 7;
        s.add_recent_results("/tmp/x".into());
        s.save(&mut storage);
        assert_eq!(Settings::load(&storage), Some(s));

        storage.set_string(KEY, "(dark: false)".into());
        let partial = Settings::load(&storage).unwrap();
        assert!(!partial.dark);
        assert_eq!(partial.study, StudyForm::default());

        storage.set_string(VERSION_KEY, "0".into());
        assert_eq!(Settings::load(&storage), None, "another version is ignored");
    }
}
