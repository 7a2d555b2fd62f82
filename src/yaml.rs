//! The only module that touches a YAML library (serde_yaml is archived upstream;
//! swapping it for a fork must stay a one-file change).
//!
//! [`Node`] is a YAML value that remembers where each piece came from, so
//! errors found after merging group and host vars still point at the line
//! the admin wrote.
//!
//! Built from yaml-rust2's event parser. Plain scalars are resolved like the
//! YAML 1.2 core schema (what serde_yaml 0.9 does): `null`/`~`/empty, `true`/
//! `false`, integers (decimal, `0x` hex, `0o` octal, `0b` binary), floats
//! (incl. `.inf`, `.nan`); everything else, and every quoted or block scalar,
//! is a string. `!!str` forces a string; other tags are rejected. Anchors and
//! aliases are supported (an alias is a copy of the anchored node, keeping
//! the anchor's locations), within a size budget; `<<` merge keys are
//! rejected. Duplicate keys are an error at the second key. A file must hold
//! a single document.
use crate::error::{Error, Location, Result};
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// How many nodes alias expansion may add before the document is refused
/// (guards against "billion laughs" documents).
const ALIAS_BUDGET: usize = 100_000;
/// Deepest nesting of lists and maps accepted (keeps recursion on nodes bounded).
const MAX_DEPTH: usize = 128;

/// A YAML value with its source location.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    /// Where the value starts (for a block map: its first key).
    pub location: Location,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in document order; keys are unique.
    Map(Vec<Entry>),
}

/// One `key: value` of a map.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_location: Location,
    pub value: Node,
}

impl Node {
    /// Parse one YAML document. `file` only labels locations.
    pub fn parse(text: &str, file: impl AsRef<Path>) -> Result<Node> {
        let shared: std::sync::Arc<Path> = file.as_ref().into();
        let file = &shared;
        let mut b = Builder {
            file,
            stack: Vec::new(),
            anchors: HashMap::new(),
            root: None,
            documents: 0,
            error: None,
            alias_budget: ALIAS_BUDGET,
        };
        let mut parser = Parser::new_from_str(text);
        if let Err(e) = parser.load(&mut b, true) {
            // A builder error found before the scanner's is the earlier one.
            if let Some(err) = b.error.take() {
                return Err(err);
            }
            let m = e.marker();
            return Err(Error::Input {
                location: loc(file, m),
                message: format!("YAML syntax error: {}", e.info()),
                hint: None,
            });
        }
        if let Some(err) = b.error {
            return Err(err);
        }
        Ok(b.root.unwrap_or_else(|| Node {
            value: Value::Null,
            location: Location {
                file: file.clone(),
                line: 1,
                column: 1,
            },
        }))
    }

    /// Read and parse a YAML file (a regular file of at most
    /// [`crate::input::MAX_INVENTORY_BYTES`]).
    pub fn load(path: &Path) -> Result<Node> {
        let text = crate::input::read_text(path, crate::input::MAX_INVENTORY_BYTES, "YAML file")?;
        Node::parse(&text, path)
    }

    pub fn new(value: Value, location: Location) -> Node {
        Node { value, location }
    }

    /// An empty map at `location`.
    pub fn empty_map(location: Location) -> Node {
        Node {
            value: Value::Map(Vec::new()),
            location,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    pub fn as_map(&self) -> Option<&[Entry]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self.value {
            Value::Int(i) => Some(i),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.value {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The map entry for `key` (None if absent or not a map).
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.as_map()?.iter().find(|e| e.key == key)
    }

    /// The value for `key` (None if absent or not a map).
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|e| &e.value)
    }

    /// Follow a path of map keys.
    pub fn get_path(&self, path: &[&str]) -> Option<&Node> {
        path.iter().try_fold(self, |n, k| n.get(k))
    }

    /// "a map", "a string", ...: for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        self.value.kind()
    }

    /// An input error located at this node.
    pub fn error(&self, message: impl Into<String>, hint: Option<String>) -> Error {
        Error::Input {
            location: self.location.clone(),
            message: message.into(),
            hint,
        }
    }

    /// Fail unless every key of this map is in `allowed`; `what` names the
    /// map in the message ("line", "ssh settings"). Suggests the closest key.
    /// A non-map is an error too.
    pub fn check_keys(&self, allowed: &[&str], what: &str) -> Result<&[Entry]> {
        let Some(entries) = self.as_map() else {
            return Err(self.error(format!("{what} must be a map, found {}", self.kind()), None));
        };
        for e in entries {
            if !allowed.contains(&e.key.as_str()) {
                return Err(unknown_key_error(&e.key, &e.key_location, allowed, what));
            }
        }
        Ok(entries)
    }

    /// Deserialize into `T`; errors carry the location of the offending node
    /// (unknown fields: the key's location, with a "did you mean").
    pub fn deserialize<'de, T: serde::Deserialize<'de>>(&'de self) -> Result<T> {
        from_node(self)
    }
}

impl Value {
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a map",
        }
    }
}

impl fmt::Display for Node {
    /// Scalars as written (resolved); collections as a short kind name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Str(s) => write!(f, "\"{}\"", crate::escape::value(s)),
            Value::Seq(_) => f.write_str("a list"),
            Value::Map(_) => f.write_str("a map"),
        }
    }
}

/// The closest candidate to `word` if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    // Jaro-Winkler is quadratic in the word's length: a huge key is no typo.
    if word.len() > 64 {
        return None;
    }
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(word, c), *c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// "unknown key `x` in `what`" with a "did you mean" / list of valid keys.
pub fn unknown_key_error(key: &str, location: &Location, allowed: &[&str], what: &str) -> Error {
    let valid = allowed
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let hint = match did_you_mean(key, allowed) {
        Some(s) => format!("did you mean `{s}`? valid keys: {valid}"),
        None => format!("valid keys: {valid}"),
    };
    Error::Input {
        location: location.clone(),
        message: format!("unknown key `{}` in {what}", crate::escape::value(key)),
        hint: Some(hint),
    }
}

/// Deep merge: maps merge key by key (recursively; `over` wins), anything
/// else in `over` replaces `base`. Every node keeps the location it was
/// written at; a merged map takes `over`'s location. Keys keep `base`'s order,
/// new keys follow in `over`'s order.
pub fn merge(base: Node, over: Node) -> Node {
    merge_ref(base, &over)
}

/// [`merge`] from a borrowed `over`: only what ends up in the result is
/// copied (the inventory merges the same group vars into many hosts).
/// Linear in the sizes of both maps, however many keys they hold.
pub fn merge_ref(base: Node, over: &Node) -> Node {
    match (base.value, &over.value) {
        (Value::Map(mut b), Value::Map(o)) => {
            if b.is_empty() {
                return over.clone();
            }
            let mut at: HashMap<String, usize> = if b.len() * o.len() > 256 {
                b.iter()
                    .enumerate()
                    .map(|(i, e)| (e.key.clone(), i))
                    .collect()
            } else {
                HashMap::new()
            };
            for oe in o {
                let found = if at.is_empty() {
                    b.iter().position(|be| be.key == oe.key)
                } else {
                    at.get(&oe.key).copied()
                };
                if let Some(i) = found {
                    let be = &mut b[i];
                    let old =
                        std::mem::replace(&mut be.value, Node::empty_map(oe.key_location.clone()));
                    be.value = merge_ref(old, &oe.value);
                    be.key_location = oe.key_location.clone();
                } else {
                    if !at.is_empty() {
                        at.insert(oe.key.clone(), b.len());
                    }
                    b.push(oe.clone());
                }
            }
            Node {
                value: Value::Map(b),
                location: over.location.clone(),
            }
        }
        _ => over.clone(),
    }
}

/// Deserialize a `T` from a node (see [`Node::deserialize`]).
pub fn from_node<'de, T: serde::Deserialize<'de>>(node: &'de Node) -> Result<T> {
    T::deserialize(node).map_err(|e| Error::Input {
        location: e.location.unwrap_or_else(|| node.location.clone()),
        message: e.message,
        hint: e.hint,
    })
}

// ---------------------------------------------------------------------------
// Scalar resolution

/// Resolve a plain scalar like the YAML 1.2 core schema.
pub fn resolve_plain(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    if let Some(v) = resolve_int(s) {
        return v;
    }
    if is_float(s) {
        if let Ok(x) = s.parse::<f64>() {
            return Value::Float(x);
        }
    }
    Value::Str(s.to_string())
}

fn resolve_int(s: &str) -> Option<Value> {
    let radix_digits = |p: &str, radix: u32| -> Option<Value> {
        if p.is_empty() || !p.chars().all(|c| c.is_digit(radix)) {
            return None;
        }
        // Too big for i64: keep it a string rather than guess.
        Some(
            i64::from_str_radix(p, radix)
                .map(Value::Int)
                .unwrap_or_else(|_| Value::Str(s.to_string())),
        )
    };
    if let Some(h) = s.strip_prefix("0x") {
        return radix_digits(h, 16);
    }
    if let Some(o) = s.strip_prefix("0o") {
        return radix_digits(o, 8);
    }
    if let Some(b) = s.strip_prefix("0b") {
        return radix_digits(b, 2);
    }
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(
        s.parse::<i64>()
            .map(Value::Int)
            .unwrap_or_else(|_| Value::Str(s.to_string())),
    )
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`
fn is_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = i - int_start;
    let mut frac_digits = 0;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let fs = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        frac_digits = i - fs;
    }
    if int_digits == 0 && frac_digits == 0 {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            i += 1;
        }
        let es = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == es {
            return false;
        }
    }
    i == b.len()
}

// ---------------------------------------------------------------------------
// Event receiver building the tree

fn loc(file: &std::sync::Arc<Path>, m: &Marker) -> Location {
    Location {
        file: file.clone(),
        line: m.line(),
        column: m.col() + 1,
    }
}

enum Frame {
    Seq {
        location: Location,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        location: Location,
        index: usize,
        anchor: usize,
        entries: Vec<Entry>,
        key: Option<(String, Location)>,
        /// Key → entry index, once the map is big enough that a linear
        /// duplicate check would make parsing quadratic.
        keys: Option<HashMap<String, usize>>,
    },
}

/// Maps with at least this many entries index their keys.
const INDEX_KEYS_FROM: usize = 16;

struct Builder<'a> {
    file: &'a std::sync::Arc<Path>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    documents: usize,
    error: Option<Error>,
    alias_budget: usize,
}

fn count_nodes(n: &Node) -> usize {
    1 + match &n.value {
        Value::Seq(s) => s.iter().map(count_nodes).sum(),
        Value::Map(m) => m.iter().map(|e| count_nodes(&e.value)).sum(),
        _ => 0,
    }
}

impl Builder<'_> {
    fn fail(&mut self, location: Location, message: impl Into<String>, hint: Option<&str>) {
        if self.error.is_none() {
            self.error = Some(Error::Input {
                location,
                message: message.into(),
                hint: hint.map(str::to_string),
            });
        }
    }

    fn expecting_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }

    /// A complete node: store it in its parent (or as the root).
    fn push(&mut self, mut node: Node, anchor: usize, implicit_null: bool) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => {
                let (k, kloc) = key.take().expect("value follows a key");
                if implicit_null {
                    // `key:` with nothing after it: the parser marks the next token.
                    node.location = kloc.clone();
                }
                entries.push(Entry {
                    key: k,
                    key_location: kloc,
                    value: node,
                });
            }
        }
    }

    fn key(&mut self, text: String, location: Location) {
        if text == "<<" {
            return self.fail(
                location,
                "YAML merge keys (`<<`) are not supported",
                Some(
                    "put shared settings in group `vars:`; dwprov deep-merges group and host vars",
                ),
            );
        }
        let Some(Frame::Map {
            entries,
            key,
            location: mloc,
            index,
            keys,
            ..
        }) = self.stack.last_mut()
        else {
            unreachable!("key outside a map")
        };
        if keys.is_none() && entries.len() >= INDEX_KEYS_FROM {
            *keys = Some(
                entries
                    .iter()
                    .enumerate()
                    .map(|(i, e)| (e.key.clone(), i))
                    .collect(),
            );
        }
        let first = match keys {
            Some(k) => k.get(&text).map(|&i| &entries[i]),
            None => entries.iter().find(|e| e.key == text),
        };
        if let Some(first) = first {
            let shown = crate::escape::value(&text);
            let hint = format!("`{shown}` is first set at line {}", first.key_location.line);
            return self.fail(location, format!("duplicate key `{shown}`"), Some(&hint));
        }
        if let Some(k) = keys {
            k.insert(text.clone(), entries.len());
        }
        // A block map's start event is marked after its first key: use the key.
        if entries.is_empty() && (location.line, location.column) < (mloc.line, mloc.column) {
            *mloc = location.clone();
            *index = 0;
        }
        *key = Some((text, location));
    }
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let here = loc(self.file, &mark);
        match ev {
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    self.fail(
                        here,
                        "more than one YAML document in the file",
                        Some("an inventory is a single document: remove the `---` separator"),
                    );
                }
            }
            Event::Alias(id) => {
                if self.expecting_key() {
                    return self.fail(here, "an alias cannot be used as a map key", None);
                }
                let Some(node) = self.anchors.get(&id).cloned() else {
                    return self.fail(here, "alias to an unknown anchor", None);
                };
                let n = count_nodes(&node);
                if n > self.alias_budget {
                    return self.fail(
                        here,
                        "aliases expand to too many nodes",
                        Some("write the values out, or use group vars"),
                    );
                }
                self.alias_budget -= n;
                self.push(node, 0, false);
            }
            Event::Scalar(text, style, anchor, tag) => {
                let forced_str = match &tag {
                    None => false,
                    Some(t)
                        if t.suffix == "str"
                            && (t.handle == "tag:yaml.org,2002:" || t.handle == "!!") =>
                    {
                        true
                    }
                    Some(t) => {
                        return self.fail(
                            here,
                            format!(
                                "YAML tag `{}` is not supported",
                                crate::escape::value(&format!("{}{}", t.handle, t.suffix))
                            ),
                            Some("remove the tag; quote the value to make it a string"),
                        )
                    }
                };
                if self.expecting_key() {
                    return self.key(text, here);
                }
                let plain = style == TScalarStyle::Plain && !forced_str;
                let implicit_null = plain && text.is_empty();
                let value = if plain {
                    resolve_plain(&text)
                } else {
                    Value::Str(text)
                };
                self.push(
                    Node {
                        value,
                        location: here,
                    },
                    anchor,
                    implicit_null,
                );
            }
            Event::SequenceStart(anchor, tag) | Event::MappingStart(anchor, tag)
                if tag.is_some() =>
            {
                let _ = anchor;
                let t = tag.unwrap();
                self.fail(
                    here,
                    format!(
                        "YAML tag `{}` is not supported",
                        crate::escape::value(&format!("{}{}", t.handle, t.suffix))
                    ),
                    Some("remove the tag"),
                )
            }
            Event::SequenceStart(..) | Event::MappingStart(..) if self.stack.len() >= MAX_DEPTH => {
                self.fail(
                    here,
                    format!("lists and maps are nested more than {MAX_DEPTH} deep"),
                    None,
                )
            }
            Event::SequenceStart(anchor, _) => {
                if self.expecting_key() {
                    return self.fail(here, "map keys must be plain strings, found a list", None);
                }
                self.stack.push(Frame::Seq {
                    location: here,
                    anchor,
                    items: Vec::new(),
                });
            }
            Event::MappingStart(anchor, _) => {
                if self.expecting_key() {
                    return self.fail(here, "map keys must be plain strings, found a map", None);
                }
                self.stack.push(Frame::Map {
                    location: here,
                    index: mark.index(),
                    anchor,
                    entries: Vec::new(),
                    key: None,
                    keys: None,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq {
                    location,
                    anchor,
                    items,
                }) => self.push(
                    Node {
                        value: Value::Seq(items),
                        location,
                    },
                    anchor,
                    false,
                ),
                Some(Frame::Map {
                    location,
                    anchor,
                    entries,
                    ..
                }) => self.push(
                    Node {
                        value: Value::Map(entries),
                        location,
                    },
                    anchor,
                    false,
                ),
                None => {}
            },
        }
    }
}

// ---------------------------------------------------------------------------
// serde Deserializer over &Node

/// Deserialization error; location filled in by the innermost node that knows it.
#[derive(Debug)]
pub struct DeError {
    location: Option<Location>,
    message: String,
    hint: Option<String>,
}

impl DeError {
    fn at(mut self, location: &Location) -> Self {
        if self.location.is_none() {
            self.location = Some(location.clone());
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl serde::de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            location: None,
            message: msg.to_string(),
            hint: None,
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let valid = expected
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let hint = match did_you_mean(field, expected) {
            Some(s) => format!("did you mean `{s}`? valid keys: {valid}"),
            None => format!("valid keys: {valid}"),
        };
        DeError {
            location: None,
            message: format!("unknown key `{}`", crate::escape::value(field)),
            hint: Some(hint),
        }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let valid = expected
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ");
        DeError {
            location: None,
            message: format!("unknown value `{}`", crate::escape::value(variant)),
            hint: Some(format!("valid values: {valid}")),
        }
    }

    fn missing_field(field: &'static str) -> Self {
        DeError {
            location: None,
            message: format!("missing required key `{field}`"),
            hint: None,
        }
    }
}

struct MapAccess<'de> {
    iter: std::slice::Iter<'de, Entry>,
    value: Option<&'de Node>,
}

impl<'de> serde::de::MapAccess<'de> for MapAccess<'de> {
    type Error = DeError;

    fn next_key_seed<K: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some(e) = self.iter.next() else {
            return Ok(None);
        };
        self.value = Some(&e.value);
        let de = serde::de::value::StrDeserializer::<DeError>::new(&e.key);
        seed.deserialize(de)
            .map(Some)
            .map_err(|err| err.at(&e.key_location))
    }

    fn next_value_seed<V: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DeError> {
        let v = self.value.take().expect("value after key");
        seed.deserialize(v).map_err(|err| err.at(&v.location))
    }
}

struct SeqAccess<'de> {
    iter: std::slice::Iter<'de, Node>,
}

impl<'de> serde::de::SeqAccess<'de> for SeqAccess<'de> {
    type Error = DeError;

    fn next_element_seed<T: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.iter.next() {
            None => Ok(None),
            Some(n) => seed
                .deserialize(n)
                .map(Some)
                .map_err(|err| err.at(&n.location)),
        }
    }
}

struct EnumAccess<'de> {
    entry: &'de Entry,
}

impl<'de> serde::de::EnumAccess<'de> for EnumAccess<'de> {
    type Error = DeError;
    type Variant = &'de Node;

    fn variant_seed<V: serde::de::DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, &'de Node), DeError> {
        let de = serde::de::value::StrDeserializer::<DeError>::new(&self.entry.key);
        let v = seed
            .deserialize(de)
            .map_err(|e| e.at(&self.entry.key_location))?;
        Ok((v, &self.entry.value))
    }
}

impl<'de> serde::de::VariantAccess<'de> for &'de Node {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        if self.is_null() {
            Ok(())
        } else {
            Err(<DeError as serde::de::Error>::custom(format!(
                "expected no value, found {}",
                self.kind()
            ))
            .at(&self.location))
        }
    }

    fn newtype_variant_seed<T: serde::de::DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, DeError> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: serde::de::Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        serde::Deserializer::deserialize_seq(self, visitor)
    }

    fn struct_variant<V: serde::de::Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        serde::Deserializer::deserialize_map(self, visitor)
    }
}

impl<'de> serde::Deserializer<'de> for &'de Node {
    type Error = DeError;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::Float(x) => visitor.visit_f64(*x),
            Value::Str(s) => visitor.visit_borrowed_str(s),
            Value::Seq(items) => visitor.visit_seq(SeqAccess { iter: items.iter() }),
            Value::Map(entries) => visitor.visit_map(MapAccess {
                iter: entries.iter(),
                value: None,
            }),
        };
        r.map_err(|e| e.at(&self.location))
    }

    fn deserialize_option<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        if self.is_null() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self).map_err(|e| e.at(&self.location))
        }
    }

    fn deserialize_newtype_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor
            .visit_newtype_struct(self)
            .map_err(|e| e.at(&self.location))
    }

    fn deserialize_enum<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let r = match &self.value {
            Value::Str(s) => {
                visitor.visit_enum(serde::de::value::StrDeserializer::<DeError>::new(s))
            }
            Value::Map(entries) if entries.len() == 1 => {
                visitor.visit_enum(EnumAccess { entry: &entries[0] })
            }
            _ => Err(<DeError as serde::de::Error>::custom(format!(
                "expected a name or a single-key map, found {}",
                self.kind()
            ))),
        };
        r.map_err(|e| e.at(&self.location))
    }

    fn deserialize_ignored_any<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Node {
        Node::parse(s, "t.yaml").unwrap()
    }

    fn err(s: &str) -> (String, usize, usize) {
        match Node::parse(s, "t.yaml").unwrap_err() {
            Error::Input {
                location, message, ..
            } => (message, location.line, location.column),
            e => panic!("unexpected {e}"),
        }
    }

    #[test]
    fn locations_of_keys_and_values() {
        let n = p("all:\n  vars:\n    ssh: {user: root, port: 0x16}\n  hosts:\n    gw1:\n");
        let all = n.get("all").unwrap();
        assert_eq!((all.location.line, all.location.column), (2, 3));
        let ssh = n.get_path(&["all", "vars", "ssh"]).unwrap();
        assert_eq!((ssh.location.line, ssh.location.column), (3, 10));
        let port = ssh.get("port").unwrap();
        assert_eq!(port.value, Value::Int(0x16));
        assert_eq!((port.location.line, port.location.column), (3, 29));
        let e = ssh.entry("port").unwrap();
        assert_eq!((e.key_location.line, e.key_location.column), (3, 23));
        // `gw1:` with nothing: null located at the key
        let gw1 = n.get_path(&["all", "hosts", "gw1"]).unwrap();
        assert!(gw1.is_null());
        assert_eq!((gw1.location.line, gw1.location.column), (5, 5));
        assert_eq!(&*gw1.location.file, Path::new("t.yaml"));
    }

    #[test]
    fn block_seq_and_map_in_seq_locations() {
        let n = p("a:\n  - 1\n  - x: 2\n    y: 3\n");
        let s = n.get("a").unwrap();
        assert_eq!((s.location.line, s.location.column), (2, 3));
        let m = &s.as_seq().unwrap()[1];
        assert_eq!((m.location.line, m.location.column), (3, 5));
    }

    #[test]
    fn scalar_resolution() {
        let cases: &[(&str, Value)] = &[
            ("~", Value::Null),
            ("null", Value::Null),
            ("true", Value::Bool(true)),
            ("False", Value::Bool(false)),
            ("0x100", Value::Int(256)),
            ("0o17", Value::Int(15)),
            ("0b101", Value::Int(5)),
            ("-42", Value::Int(-42)),
            ("1.5", Value::Float(1.5)),
            ("1e3", Value::Float(1000.0)),
            ("10.9.0.2", Value::Str("10.9.0.2".into())),
            ("192.168.0.1/24", Value::Str("192.168.0.1/24".into())),
            ("yes", Value::Str("yes".into())),
            ("0x", Value::Str("0x".into())),
            ("inf", Value::Str("inf".into())),
            (
                "99999999999999999999",
                Value::Str("99999999999999999999".into()),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(&resolve_plain(text), want, "{text}");
        }
        let n = p("a: '0x100'\nb: \"true\"\nc: !!str 12\nd: |\n  x\n");
        assert_eq!(n.get("a").unwrap().as_str(), Some("0x100"));
        assert_eq!(n.get("b").unwrap().as_str(), Some("true"));
        assert_eq!(n.get("c").unwrap().as_str(), Some("12"));
        assert_eq!(n.get("d").unwrap().as_str(), Some("x\n"));
        assert!(resolve_plain(".nan") != resolve_plain(".nan")); // NaN
    }

    #[test]
    fn duplicate_key_at_second() {
        let (m, l, c) = err("a: 1\nb:\n  x: 1\n  x: 2\n");
        assert!(m.contains("duplicate key `x`"), "{m}");
        assert_eq!((l, c), (4, 3));
    }

    #[test]
    fn syntax_error_located() {
        let (m, l, c) = err("a: [1,\nb: 2\n");
        assert!(m.contains("YAML syntax error"), "{m}");
        assert_eq!((l, c), (2, 1));
    }

    #[test]
    fn anchors_aliases_tags_documents() {
        let n = p("x: &a {k: 1}\ny: *a\n");
        assert_eq!(n.get_path(&["y", "k"]).unwrap().as_i64(), Some(1));
        assert_eq!(n.get_path(&["y", "k"]).unwrap().location.line, 1);
        assert!(err("x: &a {k: 1}\ny:\n  <<: *a\n").0.contains("merge keys"));
        assert!(err("a: !foo x\n").0.contains("tag"));
        assert!(err("a: 1\n---\nb: 2\n")
            .0
            .contains("more than one YAML document"));
        assert!(p("").is_null());
        let deep = err(&"[".repeat(100_000)).0;
        assert!(
            deep.contains("nested more than") || deep.contains("recursion"),
            "{deep}"
        );
        let deep = err(&format!("{}x", "- ".repeat(300))).0;
        assert!(deep.contains("nested more than"), "{deep}");
        // billion laughs
        let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = format!("*a{}", i - 1);
            s += &format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", "));
        }
        assert!(err(&s).0.contains("too many nodes"));
    }

    #[test]
    fn merge_deep_keeps_locations() {
        let base = p("ssh: {user: root, port: 22}\nmethod: policy\nlist: [1, 2]\n");
        let over = Node::parse("ssh: {port: 2222}\nlist: [3]\nextra: 1\n", "o.yaml").unwrap();
        let m = merge(base, over);
        let ssh = m.get("ssh").unwrap();
        assert_eq!(
            &*ssh.get("user").unwrap().location.file,
            Path::new("t.yaml")
        );
        let port = ssh.get("port").unwrap();
        assert_eq!(port.as_i64(), Some(2222));
        assert_eq!(&*port.location.file, Path::new("o.yaml"));
        assert_eq!(m.get("method").unwrap().as_str(), Some("policy"));
        let list = m.get("list").unwrap().as_seq().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(&*list[0].location.file, Path::new("o.yaml"));
        let keys: Vec<_> = m.as_map().unwrap().iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["ssh", "method", "list", "extra"]);
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Ssh {
        user: Option<String>,
        port: Option<u16>,
        #[serde(default)]
        opts: Vec<String>,
    }

    #[test]
    fn serde_errors_are_located() {
        let n = p("ssh:\n  user: root\n  port: 22\n  opts: [a, b]\n");
        let s: Ssh = n.get("ssh").unwrap().deserialize().unwrap();
        assert_eq!(s.port, Some(22));
        assert_eq!(s.opts, ["a", "b"]);
        assert_eq!(s.user.as_deref(), Some("root"));

        let at = |text: &str| match from_node::<Ssh>(p(text).get("ssh").unwrap()).unwrap_err() {
            Error::Input {
                location,
                message,
                hint,
            } => (message, hint, location.line, location.column),
            e => panic!("{e}"),
        };
        let (m, h, l, c) = at("ssh:\n  user: root\n  prot: 22\n");
        assert_eq!(m, "unknown key `prot`");
        assert!(h.unwrap().contains("did you mean `port`"));
        assert_eq!((l, c), (3, 3));
        let (m, _, l, c) = at("ssh:\n  port: 70000\n");
        assert!(m.contains("70000"), "{m}");
        assert_eq!((l, c), (2, 9));
        let (m, _, l, c) = at("ssh:\n  opts: [a, [b]]\n");
        assert!(m.contains("invalid type"), "{m}");
        assert_eq!((l, c), (2, 13));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let text = String::from_utf8_lossy(&bytes);
            let _ = Node::parse(&text, "p.yaml");
        }

        #[test]
        fn parse_yamlish_never_panics(text in "[a-z0-9 :,\\[\\]{}&*!#|>'\"~.\n-]{0,120}") {
            if let Ok(n) = Node::parse(&text, "p.yaml") {
                let _ = merge(n.clone(), n);
            }
        }
    }
}

/// A value as a YAML document (`--format yaml` of gather, plan, apply and
/// render): the one use of serde_yaml, which serialises any `Serialize`
/// value; reading YAML stays with yaml-rust2 above, for the locations.
pub fn to_yaml<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_yaml::to_string(value).map_err(|e| Error::invalid(format!("cannot write YAML: {e}")))
}

#[cfg(test)]
mod to_yaml_tests {
    #[test]
    fn a_document_round_trips_through_the_parser() {
        let doc = serde_json::json!({"format_version": 1, "hosts": [{"host": "gw1", "facts": {"kernel": "6.1", "rules": ["1100:\tfrom all lookup cnc"]}}]});
        let text = super::to_yaml(&doc).unwrap();
        assert!(text.contains("format_version: 1"), "{text}");
        let back = super::Node::parse(&text, "out.yaml").unwrap();
        assert!(format!("{back:?}").contains("lookup cnc"));
    }
}
