//! Texts by number, for policy plugins: services, namespaces, zones, nodes and endpoint attributes
//! get a `u32` id once, so a hook call hands a plugin numbers instead of copying strings into it
//! (each string copied into a WebAssembly guest is a call into its allocator). One text has one id
//! for the life of the process; the table only grows, with the names the catalog and the plugins'
//! configurations bring (never with request data: plugins look those up with [`find`]).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, OnceLock, RwLock};

/// A text's number; 0 is the empty text.
pub type TextId = u32;

#[derive(Default)]
struct Table {
    ids: HashMap<Arc<str>, TextId>,
    texts: Vec<Arc<str>>,
}

static TABLE: LazyLock<RwLock<Table>> = LazyLock::new(|| {
    let empty: Arc<str> = Arc::from("");
    RwLock::new(Table { ids: HashMap::from([(empty.clone(), 0)]), texts: vec![empty] })
});

/// The id of `s`, given one if it has none yet.
pub fn intern(s: &str) -> TextId {
    if let Some(id) = find(s) {
        return id;
    }
    let mut t = TABLE.write().unwrap_or_else(|e| e.into_inner());
    if let Some(&id) = t.ids.get(s) {
        return id;
    }
    let id = t.texts.len() as TextId;
    let s: Arc<str> = Arc::from(s);
    t.texts.push(s.clone());
    t.ids.insert(s, id);
    id
}

/// The id of `s`, if it has one.
pub fn find(s: &str) -> Option<TextId> {
    TABLE.read().unwrap_or_else(|e| e.into_inner()).ids.get(s).copied()
}

/// The text of an id, if the table gave it.
pub fn text(id: TextId) -> Option<Arc<str>> {
    TABLE.read().unwrap_or_else(|e| e.into_inner()).texts.get(id as usize).cloned()
}

/// A `Target`'s names as ids, made on first use (by a plugin's `pick-endpoint`) and kept with it.
#[derive(Debug, Default)]
pub struct TargetTexts(OnceLock<TargetIds>);

#[derive(Debug)]
pub struct TargetIds {
    pub node: TextId,
    pub zone: TextId,
    /// (name, value), in the attributes' order.
    pub attributes: Vec<(TextId, TextId)>,
}

impl super::Target {
    pub fn text_ids(&self) -> &TargetIds {
        self.texts.0.get_or_init(|| TargetIds {
            node: intern(&self.node),
            zone: intern(&self.zone),
            attributes: self.attributes.iter().map(|(k, v)| (intern(k), intern(v))).collect(),
        })
    }
}

/// The last text seen and its id: a lock-free shortcut for a field that rarely changes from one
/// call to the next (a request's service, namespace and zone on one warm plugin instance).
#[derive(Default)]
pub struct LastText {
    text: String,
    id: TextId,
}

impl LastText {
    pub fn id(&mut self, s: &str) -> TextId {
        if self.text != s {
            self.id = intern(s);
            self.text.clear();
            self.text.push_str(s);
        }
        self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_text_one_id() {
        let a = intern("texts-test-a");
        assert_eq!(intern("texts-test-a"), a);
        assert_ne!(intern("texts-test-b"), a);
        assert_eq!(find("texts-test-a"), Some(a));
        assert_eq!(find("texts-test-never"), None);
        assert_eq!(text(a).as_deref(), Some("texts-test-a"));
        assert_eq!((intern(""), text(0).as_deref()), (0, Some("")));
        let mut last = LastText::default();
        assert_eq!((last.id(""), last.id("texts-test-a"), last.id("texts-test-b")), (0, a, intern("texts-test-b")));
    }
}
