//! Position-preserving YAML loading for route files.
//!
//! `serde_yaml` gives no positions on values, but every diagnostic of the route
//! compiler must name `file:line:column`. This module therefore parses a YAML
//! stream once with [`saphyr_parser`] (an event parser that reports source
//! spans) into a small tree of [`Node`]s that keep their [`Span`]s. The tree is
//! converted to [`serde_yaml::Value`] with [`Document::to_value`] (the rest of
//! the compiler deserializes that into typed structs), and the position of any
//! path such as `spec.rules[1].matches[0]` can be looked up later with
//! [`Document::locate`].
//!
//! # Design
//!
//! Loading happens in two phases per document:
//!
//! 1. Events are folded, without recursion, into a flat arena of raw nodes in
//!    which an alias is just a reference to the (complete) anchored raw node.
//!    Collection nesting is capped at [`MAX_DEPTH`] here, so nothing later can
//!    recurse deeper than that.
//! 2. The arena is converted recursively into the public [`Node`] tree. Aliases
//!    are expanded by copying the anchored node (the copy keeps the spans of the
//!    anchored node, not of the `*alias`). Nodes produced by alias expansion are
//!    counted and capped at [`MAX_ALIAS_EXPANSION`] ("billion laughs"), and the
//!    depth cap is re-checked because an alias can graft a deep subtree at a
//!    deep position. Mapping keys are validated here (scalar only, no
//!    duplicates, no merge keys).
//!
//! # Invariants
//!
//! * Every [`Span`] is a 1-based line and a 1-based column counted in Unicode
//!   scalar values (`char`s), pointing at the first character of the node:
//!   the first character of a plain scalar, the opening quote of a quoted
//!   scalar, the first key of a block mapping, the `[`/`{` of a flow
//!   collection and the first `-` of a block sequence. Anchors and tags in
//!   front of a node are skipped (the span points at the content after them).
//!   Block scalars (`|`, `>`) point at the first line of their content, which is
//!   what the parser reports.
//! * No [`Node`] tree is nested deeper than [`MAX_DEPTH`] collections, so the
//!   recursive functions in this module ([`Node::get`], [`Document::to_value`],
//!   dropping) cannot overflow the stack.
//! * Mapping entries are in source order and their keys are unique within one
//!   mapping.
//! * Nothing reachable from the input panics; every problem is a [`YamlError`].

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::fmt;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle, Tag};
use serde_yaml::{Mapping, Number, Value};

/// Maximum nesting depth of collections (sequences and mappings) in a document.
pub const MAX_DEPTH: usize = 256;

/// Maximum number of nodes that alias expansion may produce in one document.
pub const MAX_ALIAS_EXPANSION: usize = 1_000_000;

/// 1-based line and column of a position in the source text.
///
/// Columns count Unicode scalar values (`char`s), not bytes. Displays as
/// `line:column`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span {
    /// 1-based line number.
    pub line: u32,
    /// 1-based column number, in `char`s.
    pub column: u32,
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One step of a path into a document.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Seg {
    /// A key of a mapping.
    Key(String),
    /// An index into a sequence (0-based).
    Index(usize),
}

/// A parsed node with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Position of the first character of the node (see the module docs).
    pub span: Span,
    /// What the node is.
    pub kind: NodeKind,
}

/// The content of a [`Node`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// A scalar (plain, quoted or block).
    Scalar(Scalar),
    /// A sequence, items in source order.
    Sequence(Vec<Node>),
    /// A mapping, entries in source order, keys unique.
    Mapping(Vec<Entry>),
}

/// One `key: value` entry of a mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key text (non-string scalar keys such as `1` keep their text).
    pub key: String,
    /// Position of the key.
    pub key_span: Span,
    /// The value.
    pub value: Node,
}

/// A scalar value, unresolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar {
    /// The scalar's content after unescaping/folding.
    pub text: String,
    /// `true` for the plain (unquoted, non-block) style, the only style that
    /// is subject to type resolution.
    pub plain: bool,
    /// The tag, if any: core-schema tags in short form (`!!str`), local tags as
    /// written (`!foo`), other tags as their resolved prefix plus suffix.
    pub tag: Option<String>,
}

/// One `---`-separated document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// 0-based index among the *emitted* documents of the stream. Empty or
    /// comment-only documents are skipped and do not take an index, so
    /// `index` equals the position of the document in the returned `Vec`.
    pub index: usize,
    /// Position of the explicit `---` marker, or of the root node if the
    /// document starts implicitly.
    pub span: Span,
    /// The root node.
    pub root: Node,
}

/// A YAML syntax or structure error with its position.
#[derive(Debug, thiserror::Error)]
#[error("{span}: {message}")]
pub struct YamlError {
    /// Where the problem is.
    pub span: Span,
    /// What the problem is.
    pub message: String,
}

impl YamlError {
    fn new(span: Span, message: impl Into<String>) -> Self {
        YamlError {
            span,
            message: message.into(),
        }
    }
}

/// Parses a whole YAML stream into its non-empty documents.
///
/// Documents whose content is empty (only comments, a bare `---`, a trailing
/// `---`, ...) are skipped. Anchors are scoped to their document.
///
/// # Errors
///
/// Returns the first syntax error reported by the parser, or a structural
/// error: unknown or recursive alias, duplicate key, complex (non-scalar) key,
/// merge key `<<`, nesting deeper than [`MAX_DEPTH`], or alias expansion
/// producing more than [`MAX_ALIAS_EXPANSION`] nodes.
pub fn parse_stream(source: &str) -> Result<Vec<Document>, YamlError> {
    let chars: Vec<char> = source.chars().collect();
    let mut loader = Loader::new(&chars);
    for event in Parser::new_from_str(source) {
        let (event, span) = event.map_err(|e| YamlError::new(to_span(e.marker()), e.info()))?;
        if loader.event(event, span.start, span.end)? {
            break;
        }
    }
    Ok(loader.documents)
}

impl Document {
    /// Converts to [`serde_yaml::Value`].
    ///
    /// Plain scalars are resolved with the YAML 1.2 core schema: `null`/`~`/
    /// empty → `Null`; `true`/`false` (also `True`/`TRUE`/`False`/`FALSE`) →
    /// `Bool`; decimal integers with optional sign, `0x..`, `0o..` → `Number`;
    /// floats including `.inf`/`.nan` → `Number`; anything else, and every
    /// quoted or block scalar → `String`. The tags `!!str`, `!!int`,
    /// `!!float`, `!!bool` and `!!null` force the respective type (falling back
    /// to `String` if the text does not fit); other tags are ignored. Mapping
    /// keys become `Value::String` of the key text.
    pub fn to_value(&self) -> Value {
        self.root.to_value()
    }

    /// Position of the node at `path`, for diagnostics.
    ///
    /// For a path ending in a mapping key, returns the key's span; for a path
    /// ending in a sequence index, the item's span (its first token, not the
    /// `-`). If the path does not fully exist, returns the span of the deepest
    /// existing prefix (the document root's span for an empty path).
    pub fn locate(&self, path: &[Seg]) -> Span {
        let mut node = &self.root;
        let mut span = self.root.span;
        for seg in path {
            match (seg, &node.kind) {
                (Seg::Key(k), NodeKind::Mapping(entries)) => {
                    match entries.iter().find(|e| e.key == *k) {
                        Some(e) => {
                            span = e.key_span;
                            node = &e.value;
                        }
                        None => break,
                    }
                }
                (Seg::Index(i), NodeKind::Sequence(items)) => match items.get(*i) {
                    Some(item) => {
                        span = item.span;
                        node = item;
                    }
                    None => break,
                },
                _ => break,
            }
        }
        span
    }

    /// The node at `path`, if it exists.
    pub fn get(&self, path: &[Seg]) -> Option<&Node> {
        self.root.get(path)
    }
}

impl Node {
    /// The node at `path` below this node (this node for an empty path), if it
    /// exists.
    pub fn get(&self, path: &[Seg]) -> Option<&Node> {
        let mut node = self;
        for seg in path {
            node = match (seg, &node.kind) {
                (Seg::Key(k), NodeKind::Mapping(entries)) => {
                    &entries.iter().find(|e| e.key == *k)?.value
                }
                (Seg::Index(i), NodeKind::Sequence(items)) => items.get(*i)?,
                _ => return None,
            };
        }
        Some(node)
    }

    fn to_value(&self) -> Value {
        match &self.kind {
            NodeKind::Scalar(s) => s.to_value(),
            NodeKind::Sequence(items) => {
                Value::Sequence(items.iter().map(Node::to_value).collect())
            }
            NodeKind::Mapping(entries) => {
                let mut map = Mapping::with_capacity(entries.len());
                for e in entries {
                    map.insert(Value::String(e.key.clone()), e.value.to_value());
                }
                Value::Mapping(map)
            }
        }
    }
}

impl Scalar {
    fn to_value(&self) -> Value {
        let text = self.text.as_str();
        let string = || Value::String(self.text.clone());
        match self.tag.as_deref() {
            Some("!!str") => string(),
            Some("!!null") => resolve_null(text).unwrap_or_else(string),
            Some("!!bool") => resolve_bool(text).unwrap_or_else(string),
            Some("!!int") => resolve_int(text).unwrap_or_else(string),
            Some("!!float") => resolve_float(text)
                .or_else(|| match resolve_int(text) {
                    Some(Value::Number(n)) => n.as_f64().map(|f| Value::Number(Number::from(f))),
                    _ => None,
                })
                .unwrap_or_else(string),
            _ if !self.plain => string(),
            _ => resolve_null(text)
                .or_else(|| resolve_bool(text))
                .or_else(|| resolve_int(text))
                .or_else(|| resolve_float(text))
                .unwrap_or_else(string),
        }
    }
}

fn resolve_null(text: &str) -> Option<Value> {
    matches!(text, "" | "~" | "null" | "Null" | "NULL").then_some(Value::Null)
}

fn resolve_bool(text: &str) -> Option<Value> {
    match text {
        "true" | "True" | "TRUE" => Some(Value::Bool(true)),
        "false" | "False" | "FALSE" => Some(Value::Bool(false)),
        _ => None,
    }
}

fn resolve_int(text: &str) -> Option<Value> {
    let radix = |digits: &str, radix: u32| -> Option<Value> {
        if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
            return None;
        }
        u64::from_str_radix(digits, radix)
            .ok()
            .map(|n| Value::Number(Number::from(n)))
    };
    if let Some(hex) = text.strip_prefix("0x") {
        return radix(hex, 16);
    }
    if let Some(oct) = text.strip_prefix("0o") {
        return radix(oct, 8);
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if let Ok(n) = text.parse::<i64>() {
        return Some(Value::Number(Number::from(n)));
    }
    if let Ok(n) = digits.parse::<u64>()
        && !text.starts_with('-')
    {
        return Some(Value::Number(Number::from(n)));
    }
    // Too large for any integer type: approximate, as serde_yaml does.
    text.parse::<f64>()
        .ok()
        .map(|f| Value::Number(Number::from(f)))
}

fn resolve_float(text: &str) -> Option<Value> {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    let negative = text.starts_with('-');
    match unsigned {
        ".inf" | ".Inf" | ".INF" => {
            let f = if negative {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            };
            return Some(Value::Number(Number::from(f)));
        }
        ".nan" | ".NaN" | ".NAN" if unsigned.len() == text.len() => {
            return Some(Value::Number(Number::from(f64::NAN)));
        }
        _ => {}
    }
    // [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?
    let bytes = unsigned.as_bytes();
    let mut i = 0;
    let int_digits = count_digits(&bytes[i..]);
    i += int_digits;
    let mut frac_digits = 0;
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        frac_digits = count_digits(&bytes[i..]);
        i += frac_digits;
    }
    if int_digits == 0 && frac_digits == 0 {
        return None;
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        let exp_digits = count_digits(&bytes[i..]);
        if exp_digits == 0 {
            return None;
        }
        i += exp_digits;
    }
    if i != bytes.len() {
        return None;
    }
    text.parse::<f64>()
        .ok()
        .map(|f| Value::Number(Number::from(f)))
}

fn count_digits(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| b.is_ascii_digit()).count()
}

// ---------------------------------------------------------------------------
// Phase 1: events → raw arena.

/// A source position as the parser reports it: char index, 1-based line,
/// 0-based column.
#[derive(Debug, Clone, Copy)]
struct Pos {
    index: usize,
    line: usize,
    col: usize,
}

impl Pos {
    fn from_marker(m: Marker) -> Self {
        Pos {
            index: m.index(),
            line: m.line(),
            col: m.col(),
        }
    }

    fn span(self) -> Span {
        Span {
            line: saturate(self.line),
            column: saturate(self.col.saturating_add(1)),
        }
    }
}

fn to_span(m: &Marker) -> Span {
    Pos::from_marker(*m).span()
}

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[derive(Debug)]
enum RawKind {
    Scalar {
        scalar: Scalar,
        merge_key: bool,
    },
    /// Arena index of the anchored node.
    Alias(usize),
    Seq(Vec<usize>),
    /// Alternating key, value arena indices.
    Map(Vec<usize>),
}

#[derive(Debug)]
struct Raw {
    pos: Pos,
    kind: RawKind,
}

/// An open collection while folding events.
#[derive(Debug)]
struct Frame {
    node: usize,
    anchor: usize,
}

struct Loader<'c> {
    chars: &'c [char],
    arena: Vec<Raw>,
    stack: Vec<Frame>,
    /// Anchor id (from the parser) → arena index of the complete node.
    anchors: HashMap<usize, usize>,
    root: Option<usize>,
    doc_start: Option<Pos>,
    documents: Vec<Document>,
}

impl<'c> Loader<'c> {
    fn new(chars: &'c [char]) -> Self {
        Loader {
            chars,
            arena: Vec::new(),
            stack: Vec::new(),
            anchors: HashMap::new(),
            root: None,
            doc_start: None,
            documents: Vec::new(),
        }
    }

    fn char_at(&self, index: usize) -> Option<char> {
        self.chars.get(index).copied()
    }

    /// Handles one event; returns `true` at the end of the stream.
    fn event(&mut self, event: Event<'_>, start: Marker, end: Marker) -> Result<bool, YamlError> {
        let start = Pos::from_marker(start);
        let end = Pos::from_marker(end);
        match event {
            Event::StreamEnd => return Ok(true),
            Event::Nothing | Event::StreamStart => {}
            Event::DocumentStart(explicit) => {
                self.reset();
                self.doc_start = explicit.then_some(start);
            }
            Event::DocumentEnd => self.finish_document()?,
            Event::Scalar(text, style, anchor, tag) => {
                let has_props = anchor != 0 || tag.is_some();
                let pos = if has_props {
                    self.skip_properties(start, end)
                } else {
                    start
                };
                let merge_key = style == ScalarStyle::Plain && tag.is_none() && text == "<<";
                let scalar = Scalar {
                    text: text.into_owned(),
                    plain: style == ScalarStyle::Plain,
                    tag: tag.map(|t| tag_text(&t)),
                };
                let idx = self.push(pos, RawKind::Scalar { scalar, merge_key });
                if anchor != 0 {
                    self.anchors.insert(anchor, idx);
                }
                self.attach(idx);
            }
            Event::Alias(id) => {
                let Some(&target) = self.anchors.get(&id) else {
                    let name: String = self
                        .chars
                        .get(start.index.saturating_add(1)..end.index)
                        .unwrap_or_default()
                        .iter()
                        .collect();
                    let message = if self.stack.iter().any(|f| f.anchor == id) {
                        format!(
                            "alias `*{name}` refers to a node that contains it (recursive alias)"
                        )
                    } else {
                        format!("unknown alias `*{name}`")
                    };
                    return Err(YamlError::new(start.span(), message));
                };
                let idx = self.push(start, RawKind::Alias(target));
                self.attach(idx);
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if self.stack.len() >= MAX_DEPTH {
                    return Err(YamlError::new(
                        start.span(),
                        format!("nesting deeper than {MAX_DEPTH} levels is not supported"),
                    ));
                }
                let pos = self.collection_start(start, end);
                let kind = if matches!(event, Event::SequenceStart(..)) {
                    RawKind::Seq(Vec::new())
                } else {
                    RawKind::Map(Vec::new())
                };
                let node = self.push(pos, kind);
                self.stack.push(Frame { node, anchor });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(frame) = self.stack.pop() {
                    self.fix_indentless_sequence(frame.node);
                    if frame.anchor != 0 {
                        self.anchors.insert(frame.anchor, frame.node);
                    }
                    self.attach(frame.node);
                }
            }
        }
        Ok(false)
    }

    fn reset(&mut self) {
        self.arena.clear();
        self.stack.clear();
        self.anchors.clear();
        self.root = None;
        self.doc_start = None;
    }

    fn push(&mut self, pos: Pos, kind: RawKind) -> usize {
        self.arena.push(Raw { pos, kind });
        self.arena.len() - 1
    }

    /// Adds a complete node to the innermost open collection, or makes it the
    /// document root.
    fn attach(&mut self, idx: usize) {
        let Some(frame) = self.stack.last() else {
            self.root = Some(idx);
            return;
        };
        if let Some(raw) = self.arena.get_mut(frame.node) {
            match &mut raw.kind {
                RawKind::Seq(children) | RawKind::Map(children) => children.push(idx),
                RawKind::Scalar { .. } | RawKind::Alias(_) => {}
            }
        }
    }

    fn finish_document(&mut self) -> Result<(), YamlError> {
        let Some(root) = self.root else {
            self.reset();
            return Ok(());
        };
        let empty = matches!(
            self.arena.get(root),
            Some(Raw { kind: RawKind::Scalar { scalar, .. }, .. })
                if scalar.plain && scalar.text.is_empty() && scalar.tag.is_none()
        );
        if !empty {
            let mut expander = Expander {
                arena: &self.arena,
                expanded: 0,
            };
            let root = expander.node(root, 0, None)?;
            let span = self.doc_start.map_or(root.span, Pos::span);
            self.documents.push(Document {
                index: self.documents.len(),
                span,
                root,
            });
        }
        self.reset();
        Ok(())
    }

    /// Position of the first content character after any anchor/tag
    /// properties at `start`, not going past `end`.
    fn skip_properties(&self, start: Pos, end: Pos) -> Pos {
        let mut p = start;
        let mut in_property = false;
        while p.index < end.index {
            let Some(c) = self.char_at(p.index) else {
                break;
            };
            match c {
                '\n' | '\r' => {
                    if c == '\r' && self.char_at(p.index + 1) == Some('\n') {
                        p.index += 1;
                    }
                    p = Pos {
                        index: p.index + 1,
                        line: p.line.saturating_add(1),
                        col: 0,
                    };
                    in_property = false;
                    continue;
                }
                ' ' | '\t' => in_property = false,
                '#' if !in_property => {
                    // Comment: skip to the end of the line.
                    while p.index < end.index
                        && !matches!(self.char_at(p.index), Some('\n' | '\r') | None)
                    {
                        p.index += 1;
                        p.col += 1;
                    }
                    continue;
                }
                '&' | '!' if !in_property => in_property = true,
                _ if in_property => {}
                _ => return p,
            }
            p.index += 1;
            p.col += 1;
        }
        // Empty content: point at the properties.
        start
    }

    /// Position of a collection from its start event's span: flow collections
    /// point at the bracket, block collections at their first token (the
    /// span starts at the properties, if any, and ends at the content).
    fn collection_start(&self, start: Pos, end: Pos) -> Pos {
        if end.index <= start.index {
            return start;
        }
        let before_end = end.index - 1;
        if matches!(self.char_at(before_end), Some('[' | '{')) && end.col > 0 {
            Pos {
                index: before_end,
                line: end.line,
                col: end.col - 1,
            }
        } else {
            end
        }
    }

    /// The parser reports an indentless block sequence (`key:\n- a`) at its
    /// first item's content instead of at the `-`; move it back to the dash.
    fn fix_indentless_sequence(&mut self, idx: usize) {
        let Some(Raw {
            pos,
            kind: RawKind::Seq(children),
        }) = self.arena.get(idx)
        else {
            return;
        };
        let pos = *pos;
        let first = children
            .first()
            .and_then(|&c| self.arena.get(c))
            .map(|r| r.pos.index);
        if first != Some(pos.index) || matches!(self.char_at(pos.index), Some('[')) {
            return;
        }
        // Walk back over blanks on the same line (`col` bounds the walk).
        for back in 1..=pos.col {
            let Some(index) = pos.index.checked_sub(back) else {
                return;
            };
            match self.char_at(index) {
                Some(' ' | '\t') => {}
                Some('-') => {
                    if let Some(raw) = self.arena.get_mut(idx) {
                        raw.pos = Pos {
                            index,
                            line: pos.line,
                            col: pos.col - back,
                        };
                    }
                    return;
                }
                _ => return,
            }
        }
    }
}

fn tag_text(tag: &Tag) -> String {
    if tag.is_yaml_core_schema() {
        format!("!!{}", tag.suffix)
    } else if tag.handle == "!" {
        format!("!{}", tag.suffix)
    } else {
        format!("{}{}", tag.handle, tag.suffix)
    }
}

// ---------------------------------------------------------------------------
// Phase 2: raw arena → Node tree, expanding aliases.

struct Expander<'a> {
    arena: &'a [Raw],
    /// Nodes produced so far by alias expansion.
    expanded: usize,
}

impl Expander<'_> {
    /// Converts the raw node `idx`. `depth` is the number of enclosing
    /// collections; `alias` is the span of the outermost alias being expanded.
    fn node(&mut self, idx: usize, depth: usize, alias: Option<Span>) -> Result<Node, YamlError> {
        let Some(raw) = self.arena.get(idx) else {
            return Err(YamlError::new(
                Span::default(),
                "internal error: dangling node",
            ));
        };
        let span = raw.pos.span();
        if let RawKind::Alias(target) = raw.kind {
            return self.node(target, depth, Some(alias.unwrap_or(span)));
        }
        if let Some(alias_span) = alias {
            self.expanded += 1;
            if self.expanded > MAX_ALIAS_EXPANSION {
                return Err(YamlError::new(
                    alias_span,
                    format!("alias expansion produces more than {MAX_ALIAS_EXPANSION} nodes"),
                ));
            }
        }
        let kind = match &raw.kind {
            RawKind::Scalar { scalar, .. } => NodeKind::Scalar(scalar.clone()),
            RawKind::Alias(_) => {
                return Err(YamlError::new(span, "internal error: unresolved alias"));
            }
            RawKind::Seq(children) => {
                self.check_depth(depth, span, alias)?;
                let items = children
                    .iter()
                    .map(|&c| self.node(c, depth + 1, alias))
                    .collect::<Result<Vec<_>, _>>()?;
                NodeKind::Sequence(items)
            }
            RawKind::Map(children) => {
                self.check_depth(depth, span, alias)?;
                let mut entries: Vec<Entry> = Vec::with_capacity(children.len() / 2);
                let mut seen: HashMap<String, Span> = HashMap::new();
                for pair in children.chunks(2) {
                    let &[k, v] = pair else { break };
                    let (key, key_span) = self.key(k)?;
                    match seen.entry(key.clone()) {
                        MapEntry::Occupied(first) => {
                            return Err(YamlError::new(
                                key_span,
                                format!("duplicate key `{key}` (first at {})", first.get()),
                            ));
                        }
                        MapEntry::Vacant(slot) => {
                            slot.insert(key_span);
                        }
                    }
                    let value = self.node(v, depth + 1, alias)?;
                    entries.push(Entry {
                        key,
                        key_span,
                        value,
                    });
                }
                NodeKind::Mapping(entries)
            }
        };
        Ok(Node { span, kind })
    }

    fn check_depth(&self, depth: usize, span: Span, alias: Option<Span>) -> Result<(), YamlError> {
        if depth >= MAX_DEPTH {
            return Err(YamlError::new(
                alias.unwrap_or(span),
                format!("nesting deeper than {MAX_DEPTH} levels is not supported"),
            ));
        }
        Ok(())
    }

    /// Text and span of a mapping key; keys must be scalars (an alias to a
    /// scalar is accepted).
    fn key(&self, idx: usize) -> Result<(String, Span), YamlError> {
        let Some(raw) = self.arena.get(idx) else {
            return Err(YamlError::new(
                Span::default(),
                "internal error: dangling key",
            ));
        };
        let span = raw.pos.span();
        let mut target = raw;
        if let RawKind::Alias(t) = raw.kind
            && let Some(r) = self.arena.get(t)
        {
            target = r;
        }
        match &target.kind {
            RawKind::Scalar {
                merge_key: true, ..
            } => Err(YamlError::new(
                span,
                "merge keys (`<<`) are not supported; write the entries out",
            )),
            RawKind::Scalar { scalar, .. } => Ok((scalar.text.clone(), span)),
            _ => Err(YamlError::new(
                span,
                "complex mapping keys (sequences or mappings as keys) are not supported",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `spec.rules[0].matches` style paths (test helper).
    fn path(s: &str) -> Vec<Seg> {
        let mut out = Vec::new();
        for part in s.split('.').filter(|p| !p.is_empty()) {
            let mut rest = part;
            if let Some(i) = rest.find('[') {
                if i > 0 {
                    out.push(Seg::Key(rest[..i].to_string()));
                }
                rest = &rest[i..];
                while let Some(r) = rest.strip_prefix('[') {
                    let close = r.find(']').unwrap();
                    out.push(Seg::Index(r[..close].parse().unwrap()));
                    rest = &r[close + 1..];
                }
            } else {
                out.push(Seg::Key(rest.to_string()));
            }
        }
        out
    }

    fn sp(line: u32, column: u32) -> Span {
        Span { line, column }
    }

    fn one(src: &str) -> Document {
        let mut docs = parse_stream(src).unwrap();
        assert_eq!(docs.len(), 1, "{docs:?}");
        docs.remove(0)
    }

    fn err(src: &str) -> YamlError {
        parse_stream(src).unwrap_err()
    }

    const ROUTES: &str = "\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: task-api-drained
  namespace: task-api
spec:
  parentRefs:
  - name: task-api-gateway
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: /api/
    backendRefs:
    - name: task-api-blue
      port: 8000
      weight: 0
---
# second route, indented sequences
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: other, labels: {a: \"1\"}}
spec:
  rules:
    - matches:
        - headers:
            - name: x-version
              value: \"2\"
      backendRefs: [{name: green, port: 8001}]
---
";

    #[test]
    fn gateway_example_positions() {
        let docs = parse_stream(ROUTES).unwrap();
        assert_eq!(docs.len(), 2);
        let d = &docs[0];
        assert_eq!(d.index, 0);
        assert_eq!(d.span, sp(1, 1));
        assert_eq!(d.locate(&path("spec.rules[0].backendRefs")), sp(14, 5));
        assert_eq!(d.locate(&path("spec.rules[0]")), sp(10, 5));
        assert_eq!(d.locate(&path("spec.rules[0].matches[0]")), sp(11, 7));
        assert_eq!(
            d.locate(&path("spec.rules[0].backendRefs[0].weight")),
            sp(17, 7)
        );
        assert_eq!(d.locate(&path("spec.rules")), sp(9, 3));
        assert_eq!(d.locate(&path("spec.parentRefs[0].name")), sp(8, 5));
        assert_eq!(d.locate(&path("metadata.name")), sp(4, 3));
        assert_eq!(d.locate(&[]), sp(1, 1));
        // Node spans: the indentless sequence points at its first dash.
        assert_eq!(d.get(&path("spec.rules")).unwrap().span, sp(10, 3));
        assert_eq!(
            d.get(&path("spec.rules[0].matches")).unwrap().span,
            sp(11, 5)
        );
        assert_eq!(
            d.get(&path("spec.rules[0].matches[0].path")).unwrap().span,
            sp(12, 9)
        );
        assert_eq!(
            d.get(&path("spec.rules[0].matches[0].path.value"))
                .unwrap()
                .span,
            sp(13, 16)
        );
        // Missing paths: deepest existing prefix.
        assert_eq!(d.locate(&path("spec.rules[0].filters[2]")), sp(10, 5));
        assert_eq!(d.locate(&path("spec.rules[7].matches")), sp(9, 3));
        assert_eq!(d.locate(&path("kind.nope")), sp(2, 1));
        assert!(d.get(&path("spec.rules[1]")).is_none());

        let v = d.to_value();
        assert_eq!(
            v["spec"]["rules"][0]["backendRefs"][0]["port"],
            Value::Number(8000.into())
        );
        assert_eq!(
            v["spec"]["rules"][0]["backendRefs"][0]["weight"],
            Value::Number(0.into())
        );
        assert_eq!(v["kind"], Value::String("HTTPRoute".into()));
        assert_eq!(
            v["spec"]["rules"][0]["matches"][0]["path"]["value"],
            Value::String("/api/".into())
        );

        let d = &docs[1];
        assert_eq!(d.index, 1);
        assert_eq!(d.span, sp(18, 1));
        assert_eq!(d.locate(&path("metadata")), sp(22, 1));
        assert_eq!(d.get(&path("metadata")).unwrap().span, sp(22, 11));
        assert_eq!(d.locate(&path("metadata.labels.a")), sp(22, 34));
        assert_eq!(d.get(&path("spec.rules")).unwrap().span, sp(25, 5));
        assert_eq!(d.locate(&path("spec.rules[0]")), sp(25, 7));
        assert_eq!(d.locate(&path("spec.rules[0].matches[0]")), sp(26, 11));
        assert_eq!(
            d.locate(&path("spec.rules[0].matches[0].headers[0].value")),
            sp(28, 15)
        );
        assert_eq!(
            d.get(&path("spec.rules[0].backendRefs")).unwrap().span,
            sp(29, 20)
        );
        assert_eq!(d.locate(&path("spec.rules[0].backendRefs[0]")), sp(29, 21));
        assert_eq!(
            d.locate(&path("spec.rules[0].backendRefs[0].port")),
            sp(29, 35)
        );
        let v = d.to_value();
        assert_eq!(v["metadata"]["labels"]["a"], Value::String("1".into()));
        assert_eq!(
            v["spec"]["rules"][0]["matches"][0]["headers"][0]["value"],
            Value::String("2".into())
        );
        assert_eq!(
            v["spec"]["rules"][0]["backendRefs"][0]["port"],
            Value::Number(8001.into())
        );
    }

    #[test]
    fn scalar_resolution() {
        let d = one(
            "a: \"2\"\nb: 2\nc: true\nd: \"true\"\ne: ~\nf:\ng: null\nh: -17\ni: +3\nj: 0x1F\nk: 0o17\n\
             l: 1.5\nm: -.inf\nn: .NaN\no: 1e3\np: 'x'\nq: |\n  lit\nr: >\n  fold\n  ed\ns: TRUE\n\
             t: yes\nu: 0b101\nv: 1_000\nw: 12abc\nx: 99999999999999999999\ny: False\nz: .5\n",
        );
        let v = d.to_value();
        let n = |x: i64| Value::Number(x.into());
        let s = |x: &str| Value::String(x.into());
        assert_eq!(v["a"], s("2"));
        assert_eq!(v["b"], n(2));
        assert_eq!(v["c"], Value::Bool(true));
        assert_eq!(v["d"], s("true"));
        assert_eq!(v["e"], Value::Null);
        assert_eq!(v["f"], Value::Null);
        assert_eq!(v["g"], Value::Null);
        assert_eq!(v["h"], n(-17));
        assert_eq!(v["i"], n(3));
        assert_eq!(v["j"], n(31));
        assert_eq!(v["k"], n(15));
        assert_eq!(v["l"], Value::Number(1.5.into()));
        assert_eq!(v["m"], Value::Number(f64::NEG_INFINITY.into()));
        assert!(v["n"].as_f64().unwrap().is_nan());
        assert_eq!(v["o"], Value::Number(1000.0.into()));
        assert_eq!(v["p"], s("x"));
        assert_eq!(v["q"], s("lit\n"));
        assert_eq!(v["r"], s("fold ed\n"));
        assert_eq!(v["s"], Value::Bool(true));
        assert_eq!(v["t"], s("yes"));
        assert_eq!(v["u"], s("0b101"));
        assert_eq!(v["v"], s("1_000"));
        assert_eq!(v["w"], s("12abc"));
        assert!(v["x"].is_f64());
        assert_eq!(v["y"], Value::Bool(false));
        assert_eq!(v["z"], Value::Number(0.5.into()));
        // u64 range
        assert_eq!(
            one("a: 18446744073709551615").to_value()["a"],
            Value::Number(u64::MAX.into())
        );
    }

    #[test]
    fn tags() {
        let d = one(
            "a: !!str 5\nb: !!int \"7\"\nc: !!float 3\nd: !!bool \"true\"\ne: !!null \"\"\nf: !custom 5\ng: !custom \"5\"\nh: !!int nope\n",
        );
        let v = d.to_value();
        assert_eq!(v["a"], Value::String("5".into()));
        assert_eq!(v["b"], Value::Number(7.into()));
        assert_eq!(v["c"], Value::Number(3.0.into()));
        assert_eq!(v["d"], Value::Bool(true));
        assert_eq!(v["e"], Value::Null);
        assert_eq!(v["f"], Value::Number(5.into()));
        assert_eq!(v["g"], Value::String("5".into()));
        assert_eq!(v["h"], Value::String("nope".into()));
        let NodeKind::Scalar(s) = &d.get(&path("a")).unwrap().kind else {
            panic!()
        };
        assert_eq!(s.tag.as_deref(), Some("!!str"));
        assert!(s.plain);
        let NodeKind::Scalar(s) = &d.get(&path("g")).unwrap().kind else {
            panic!()
        };
        assert_eq!(s.tag.as_deref(), Some("!custom"));
        assert!(!s.plain);
        // Spans skip the tag.
        assert_eq!(d.get(&path("a")).unwrap().span, sp(1, 10));
        assert_eq!(d.get(&path("g")).unwrap().span, sp(7, 12));
    }

    #[test]
    fn flow_style() {
        let src = "{a: [1, \"two\", {b: c}], 'd e': {f: [ ]}, g: {}}\n";
        let d = one(src);
        assert_eq!(d.root.span, sp(1, 1));
        assert_eq!(d.locate(&path("a")), sp(1, 2));
        assert_eq!(d.get(&path("a")).unwrap().span, sp(1, 5));
        assert_eq!(d.locate(&path("a[1]")), sp(1, 9));
        assert_eq!(d.locate(&path("a[2]")), sp(1, 16));
        assert_eq!(d.locate(&path("a[2].b")), sp(1, 17));
        assert_eq!(
            d.locate(&[Seg::Key("d e".into()), Seg::Key("f".into())]),
            sp(1, 33)
        );
        let v = d.to_value();
        assert_eq!(v["a"][0], Value::Number(1.into()));
        assert_eq!(v["a"][1], Value::String("two".into()));
        assert_eq!(v["a"][2]["b"], Value::String("c".into()));
        assert_eq!(v["d e"]["f"], Value::Sequence(vec![]));
        assert_eq!(v["g"], Value::Mapping(Mapping::new()));
        // Multi-line flow collection.
        let d = one("k: [\n  a,\n  b\n]\n");
        assert_eq!(d.locate(&path("k[1]")), sp(3, 3));
        assert_eq!(d.get(&path("k")).unwrap().span, sp(1, 4));
    }

    #[test]
    fn multi_line_scalars_and_comments() {
        let src = "# header\na: this is\n  a long plain  # not a comment? yes it is\nb: \"quoted\n  across\" # c\nc: |\n  line1\n  line2\nd: 1 # trailing\n";
        let d = one(src);
        let v = d.to_value();
        assert_eq!(v["a"], Value::String("this is a long plain".into()));
        assert_eq!(v["b"], Value::String("quoted across".into()));
        assert_eq!(v["c"], Value::String("line1\nline2\n".into()));
        assert_eq!(v["d"], Value::Number(1.into()));
        assert_eq!(d.locate(&path("a")), sp(2, 1));
        assert_eq!(d.get(&path("a")).unwrap().span, sp(2, 4));
        assert_eq!(d.get(&path("b")).unwrap().span, sp(4, 4));
        assert_eq!(d.get(&path("c")).unwrap().span, sp(7, 3));
        assert_eq!(d.locate(&path("d")), sp(9, 1));
    }

    #[test]
    fn unicode_columns_are_chars() {
        let d = one("ключ: значение\nb: \"é\" \n");
        assert_eq!(d.get(&path("ключ")).unwrap().span, sp(1, 7));
        assert_eq!(d.locate(&path("b")), sp(2, 1));
        let d = one("a: 1\r\nb:\r\n  - x\r\n");
        assert_eq!(d.locate(&path("b[0]")), sp(3, 5));
    }

    #[test]
    fn empty_documents_are_skipped() {
        assert!(parse_stream("").unwrap().is_empty());
        assert!(parse_stream("# only\n# comments\n").unwrap().is_empty());
        assert!(
            parse_stream("---\n...\n---\n# c\n---\n")
                .unwrap()
                .is_empty()
        );
        let docs = parse_stream("---\n# empty\n---\na: 1\n...\n---\n---\nb: 2\n---\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].index, 0);
        assert_eq!(docs[0].span, sp(3, 1));
        assert_eq!(docs[0].root.span, sp(4, 1));
        assert_eq!(docs[1].index, 1);
        assert_eq!(docs[1].span, sp(7, 1));
        assert_eq!(docs[1].locate(&path("b")), sp(8, 1));
        // An explicit null or empty string is not an empty document.
        let docs = parse_stream("--- ~\n--- ''\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].to_value(), Value::Null);
        assert_eq!(docs[1].to_value(), Value::String(String::new()));
        assert_eq!(docs[1].root.span, sp(2, 5));
    }

    #[test]
    fn aliases() {
        let src = "base: &b\n  name: x\n  port: 80\ncopy: *b\nlist: [&s one, *s]\nkey: &k name\nmap: {*k : v}\n";
        let d = one(src);
        let v = d.to_value();
        assert_eq!(v["copy"], v["base"]);
        assert_eq!(v["copy"]["port"], Value::Number(80.into()));
        assert_eq!(v["list"][1], Value::String("one".into()));
        assert_eq!(v["map"]["name"], Value::String("v".into()));
        // Copies keep the anchored node's spans.
        assert_eq!(d.get(&path("base")).unwrap().span, sp(2, 3));
        assert_eq!(d.get(&path("copy")).unwrap().span, sp(2, 3));
        assert_eq!(d.locate(&path("copy.port")), sp(3, 3));
        assert_eq!(d.get(&path("list[0]")).unwrap().span, sp(5, 11));
        assert_eq!(d.get(&path("list[1]")).unwrap().span, sp(5, 11));
        // Block sequence with anchor points at the dash.
        let d = one("a: &x\n  - 1\nb: *x\n");
        assert_eq!(d.get(&path("a")).unwrap().span, sp(2, 3));
        assert_eq!(d.get(&path("b")).unwrap().span, sp(2, 3));
        // Anchor on the line before a flow mapping.
        let d = one("a: &x\n  {k: 1}\nb: !!map &y # c\n  [1]\n");
        assert_eq!(d.get(&path("a")).unwrap().span, sp(2, 3));
        assert_eq!(d.get(&path("b")).unwrap().span, sp(4, 3));
        // Anchor with a comment before a block mapping.
        let d = one("a: &x # c\n  k: 1\n");
        assert_eq!(d.get(&path("a")).unwrap().span, sp(2, 3));
        // Anchors do not cross documents.
        let e = err("a: &x 1\n---\nb: *x\n");
        assert!(e.message.contains("x"), "{e}");
        assert_eq!(e.span.line, 3);
    }

    #[test]
    fn unknown_and_recursive_alias() {
        let e = err("a: 1\nb: *nope\n");
        assert_eq!(e.span, sp(2, 4));
        let e = err("a: &r [1, *r]\n");
        assert!(e.message.contains("recursive"), "{e}");
        assert_eq!(e.span, sp(1, 11));
    }

    #[test]
    fn billion_laughs_is_capped() {
        let mut src = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = i - 1;
            src.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        let e = err(&src);
        assert!(e.message.contains("alias expansion"), "{e}");
        // Moderate use is fine.
        let d = one("a: &a [1, 2]\nb: &b [*a, *a]\nc: [*b, *b]\n");
        assert_eq!(d.to_value()["c"][1][1][0], Value::Number(1.into()));
    }

    #[test]
    fn deep_nesting_is_capped() {
        // saphyr-parser itself stops at 255 levels of flow nesting.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let e = err(&deep);
        assert_eq!(e.to_string(), "1:256: recursion limit exceeded");
        // Block nesting is capped by this module.
        let block =
            |n: usize| -> String { (0..n).map(|i| format!("{}k:\n", " ".repeat(i))).collect() };
        assert_eq!(parse_stream(&block(MAX_DEPTH)).unwrap().len(), 1);
        let e = err(&block(MAX_DEPTH + 1));
        assert_eq!(e.span, sp(MAX_DEPTH as u32 + 1, MAX_DEPTH as u32 + 1));
        assert!(e.message.contains("nesting"), "{e}");
        let e = err(&block(2_000));
        assert!(e.message.contains("nesting"), "{e}");
        // Alias grafting a deep subtree at a deep position.
        let half = MAX_DEPTH / 2 + 10;
        let src = format!(
            "a: &d {}1{}\nb: {}*d{}\n",
            "[".repeat(half),
            "]".repeat(half),
            "[".repeat(half),
            "]".repeat(half)
        );
        assert!(err(&src).message.contains("nesting"));
    }

    #[test]
    fn duplicate_keys() {
        let e = err("a: 1\nb:\n  x: 1\n  y: 2\n  x: 3\n");
        assert_eq!(e.span, sp(5, 3));
        assert_eq!(e.message, "duplicate key `x` (first at 3:3)");
        assert_eq!(e.to_string(), "5:3: duplicate key `x` (first at 3:3)");
        let e = err("{a: 1, \"a\": 2}");
        assert_eq!(e.span, sp(1, 8));
        let e = err("1: a\n'1': b\n");
        assert_eq!(e.span, sp(2, 1));
        // Same key in different mappings is fine.
        one("- a: 1\n- a: 2\n");
    }

    #[test]
    fn keys() {
        let d = one("1: a\ntrue: b\n~: c\n\"<<\": d\n");
        let v = d.to_value();
        assert_eq!(v["1"], Value::String("a".into()));
        assert_eq!(v["true"], Value::String("b".into()));
        assert_eq!(v["~"], Value::String("c".into()));
        assert_eq!(v["<<"], Value::String("d".into()));
        let e = err("? [a, b]\n: c\n");
        assert!(e.message.contains("complex"), "{e}");
        assert_eq!(e.span, sp(1, 3));
        let e = err("{? {a: 1} : 2}");
        assert!(e.message.contains("complex"), "{e}");
        let e = err("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n");
        assert!(e.message.contains("merge"), "{e}");
        assert_eq!(e.span, sp(3, 3));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = err("a: 1\nb: [1, 2\n");
        assert!(!e.message.is_empty());
        assert!(e.span.line >= 2, "{e}");
        let e = err("a: b: c\n");
        assert_eq!(e.span, sp(1, 5), "{e}");
        let e = err("a: 1\n  b: 2\n");
        assert_eq!(e.span.line, 2, "{e}");
        let e = err("k: \"unterminated\n");
        assert!(e.span.line >= 1, "{e}");
        let e = err("a:\n\t- b\n");
        assert_eq!(e.span.line, 2, "{e}");
    }

    #[test]
    fn root_sequence_and_scalar() {
        let docs = parse_stream("- a\n- - b\n  - c\n--- plain text\n---\n  -   x\n").unwrap();
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[0].root.span, sp(1, 1));
        assert_eq!(docs[0].get(&path("[1]")).unwrap().span, sp(2, 3));
        assert_eq!(docs[0].locate(&path("[1][1]")), sp(3, 5));
        assert_eq!(docs[1].root.span, sp(4, 5));
        assert_eq!(docs[1].to_value(), Value::String("plain text".into()));
        assert_eq!(docs[2].root.span, sp(6, 3));
        assert_eq!(docs[2].locate(&path("[0]")), sp(6, 7));
        // Indentless nested sequence points at the first dash.
        let d = one("k:\n- - a\n  - b\n");
        assert_eq!(d.get(&path("k")).unwrap().span, sp(2, 1));
        assert_eq!(d.get(&path("k[0]")).unwrap().span, sp(2, 3));
    }

    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn fuzz_never_panics() {
        let alphabet: &[&str] = &[
            " ",
            "  ",
            "\n",
            "\r\n",
            "\t",
            "-",
            "- ",
            ":",
            ": ",
            "?",
            "? ",
            ",",
            "[",
            "]",
            "{",
            "}",
            "#",
            "&a",
            "&b ",
            "*a",
            "*b",
            "!",
            "!!str ",
            "!!int ",
            "!t ",
            "|",
            ">",
            "|-",
            ">+2",
            "'",
            "\"",
            "\\",
            "---",
            "...",
            "%YAML 1.2",
            "%TAG ! x:",
            "a",
            "k",
            "<<",
            "1",
            "0x",
            ".inf",
            "~",
            "é",
            "\u{0}",
            "\u{feff}",
            "@",
            "`",
            "%",
        ];
        let seeds: &[&str] = &[
            ROUTES,
            "a: &x [1, {b: *x}]\n",
            "- ? a\n  : b\n- !!map {c: d}\n",
            "k: |\n  lit\n  # x\nj: >-\n  f\n",
        ];
        // `YAML_FUZZ_ITERS` allows longer runs, e.g. with `--release`.
        let iters = std::env::var("YAML_FUZZ_ITERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(6000);
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for i in 0..iters {
            let input: String = match i % 3 {
                0 => (0..rng.next() % 64)
                    .map(|_| alphabet[(rng.next() % alphabet.len() as u64) as usize])
                    .collect(),
                1 => {
                    let bytes: Vec<u8> = (0..rng.next() % 48)
                        .map(|_| (rng.next() % 128) as u8)
                        .collect();
                    String::from_utf8_lossy(&bytes).into_owned()
                }
                _ => {
                    // Truncate / mutate a valid document.
                    let seed: Vec<char> = seeds[(rng.next() % seeds.len() as u64) as usize]
                        .chars()
                        .collect();
                    let cut = (rng.next() % (seed.len() as u64 + 1)) as usize;
                    let mut s: Vec<char> = seed[..cut].to_vec();
                    for _ in 0..(rng.next() % 4) {
                        if s.is_empty() {
                            break;
                        }
                        let at = (rng.next() % s.len() as u64) as usize;
                        let tok = alphabet[(rng.next() % alphabet.len() as u64) as usize];
                        s.splice(at..at, tok.chars());
                    }
                    s.into_iter().collect()
                }
            };
            if let Ok(docs) = parse_stream(&input) {
                for d in &docs {
                    let _ = d.to_value();
                    let _ = d.locate(&path("a[0].b"));
                }
            }
        }
    }
}
