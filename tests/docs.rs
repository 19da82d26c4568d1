//! The documentation holds together: every relative link and `#anchor` in README.md and
//! docs/*.md resolves (the file or folder exists inside the repository; an anchor names a
//! heading of the Markdown file it points into, by GitHub's slugs); the README stays a front
//! door (at most [`README_MAX_LINES`] lines, linking every page of docs/, each of which says
//! first who it is for); and the options table of docs/operations.md is the one
//! `tickcast serve --help` prints: every `--long` option has exactly one row, every row is an
//! option, and each row's variable and default are clap's.
//!
//! Failures list every broken link or option at once, each with its file and line, so a
//! change that moves a heading or adds an option is told exactly what to fix.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;

use common::*;

/// The longest the README may grow: a pitch, two commands, a screenshot, the architecture
/// in brief, a headline table and an index; everything else has a page under docs/.
const README_MAX_LINES: usize = 250;

/// The page whose `## Options` table must match `tickcast serve --help`.
const OPTIONS_PAGE: &str = "docs/operations.md";

/// The columns of the options table, in order.
const OPTIONS_HEADER: [&str; 4] = ["option", "variable", "default", "meaning"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// README.md and every docs/*.md, as paths relative to the repository's root.
fn pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|entry| entry.expect("docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .map(|path| path.strip_prefix(root()).expect("under root").to_path_buf())
        .collect();
    pages.sort();
    pages.insert(0, PathBuf::from("README.md"));
    pages
}

/// The lines of `text` outside fenced code blocks, numbered from 1.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fence: Option<&str> = None;
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m));
        match (fence, marker) {
            (None, Some(m)) => fence = Some(m),
            (Some(open), Some(m)) if open == m => fence = None,
            (None, None) => lines.push((i + 1, line)),
            _ => {}
        }
    }
    lines
}

/// `line` without its code spans (a run of backticks up to the next run as long).
fn without_code_spans(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        out.push_str(&rest[..start]);
        let run = rest[start..].chars().take_while(|&c| c == '`').count();
        let after = &rest[start + run..];
        match after.find(&"`".repeat(run)) {
            Some(end) => rest = &after[end + run..],
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The targets of the inline links and images on `line` (`[text](target "title")`).
fn link_targets(line: &str) -> Vec<String> {
    let line = without_code_spans(line);
    let mut targets = Vec::new();
    let mut from = 0;
    while let Some(at) = line[from..].find("](") {
        let start = from + at + 2;
        let mut depth = 1;
        let mut end = None;
        for (i, c) in line[start..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                end = Some(start + i);
                break;
            }
        }
        let Some(end) = end else { break };
        let inner = line[start..end].trim();
        let target = inner.split_whitespace().next().unwrap_or_default();
        targets.push(target.trim_matches(|c| c == '<' || c == '>').to_string());
        from = end;
    }
    targets
}

/// GitHub's anchor for a heading's text: inline markup dropped, lower case, letters,
/// digits, `-` and `_` kept, spaces made `-`, everything else removed.
fn slug(heading: &str) -> String {
    heading
        .chars()
        .flat_map(char::to_lowercase)
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// Every anchor of a Markdown text: its headings' slugs, a repeated one numbered `-1`, `-2`...
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut anchors = BTreeSet::new();
    for (_, line) in prose_lines(text) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(line[hashes..].trim().trim_end_matches('#').trim());
        let n = seen.entry(base.clone()).or_insert(0);
        anchors.insert(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    anchors
}

/// `path` with `.` and `..` resolved, or `None` when it climbs out of the repository.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(name) => out.push(name),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// What is wrong with `target`, a link on `page`; `None` when it resolves.
fn broken(page: &Path, target: &str) -> Option<String> {
    let (path, anchor) = match target.split_once('#') {
        Some((path, anchor)) => (path, Some(anchor)),
        None => (target, None),
    };
    let file = if path.is_empty() {
        page.to_path_buf()
    } else {
        let joined = page.parent().unwrap_or(Path::new("")).join(path);
        match normalize(&joined) {
            Some(file) => file,
            None => return Some(format!("{path} leads out of the repository")),
        }
    };
    let on_disk = root().join(&file);
    if !on_disk.exists() {
        return Some(format!("{} does not exist", file.display()));
    }
    let anchor = anchor?;
    if on_disk.extension().is_none_or(|ext| ext != "md") {
        return Some(format!(
            "#{anchor} points into {}, which is not Markdown",
            file.display()
        ));
    }
    let known = anchors(&read(&on_disk));
    if known.contains(anchor) {
        return None;
    }
    Some(format!(
        "{} has no heading whose anchor is #{anchor}; its anchors: {}",
        file.display(),
        known.into_iter().collect::<Vec<_>>().join(", ")
    ))
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = read(&root().join(&page));
        for (line_no, line) in prose_lines(&text) {
            for target in link_targets(line) {
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                checked += 1;
                if let Some(why) = broken(&page, &target) {
                    failures.push(format!("{}:{line_no}: ({target}): {why}", page.display()));
                }
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} relative links found: is the parser blind?"
    );
    assert!(
        failures.is_empty(),
        "{} broken link(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_link_checker_sees_what_github_renders() {
    assert_eq!(
        slug("TLS: `wss://` served by tickcast"),
        "tls-wss-served-by-tickcast"
    );
    assert_eq!(slug("The dashboard's token"), "the-dashboards-token");
    assert_eq!(slug("Batching (`?batch=1`)"), "batching-batch1");
    assert_eq!(
        link_targets("see [a](x.md#b), `[not](y.md)` and ![img](p.png \"t\")"),
        ["x.md#b", "p.png"]
    );
    let text = "# A\n```sh\n# not a heading\n```\n## A\n[x](#a-1)\n";
    assert_eq!(anchors(text), BTreeSet::from(["a".into(), "a-1".into()]));
    assert_eq!(prose_lines(text).len(), 3);
    assert_eq!(normalize(Path::new("docs/../../x")), None);
}

#[test]
fn the_readme_is_a_front_door_and_indexes_every_page() {
    let readme = read(&root().join("README.md"));
    let lines = readme.lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines, at most {README_MAX_LINES}: move the rest to a page under docs/"
    );
    let linked: BTreeSet<String> = prose_lines(&readme)
        .into_iter()
        .flat_map(|(_, line)| link_targets(line))
        .map(|t| t.split('#').next().unwrap_or_default().to_string())
        .collect();
    let mut failures = Vec::new();
    for page in pages().into_iter().skip(1) {
        let name = page.display().to_string();
        if !linked.contains(&name) {
            failures.push(format!(
                "README.md does not link {name} (add it to its index)"
            ));
        }
        let text = read(&root().join(&page));
        let mut paragraphs = text.split("\n\n").map(str::trim);
        let title = paragraphs.next().unwrap_or_default();
        let first = paragraphs.next().unwrap_or_default();
        if !title.starts_with("# ") || !first.starts_with("For ") {
            failures.push(format!(
                "{name} must open with its `# ` title and then a paragraph starting \"For \" \
                 that says who the page is for"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// One `--long` option as `serve --help` prints it.
#[derive(Debug)]
struct HelpOption {
    variable: Option<String>,
    default: Option<String>,
}

/// Every `--long` option of `tickcast serve --help` but `--help` and `--version`.
fn serve_help_options() -> BTreeMap<String, HelpOption> {
    let mut child = tickcast(&["serve", "--help"], &[])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tickcast serve --help");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let status = wait_exit(&mut child, "tickcast serve --help");
    assert!(status.success(), "tickcast serve --help: {status}");
    let help = reader.join().expect("stdout reader");

    let mut options = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in help.lines() {
        // An option's first line is indented by 2 to 6 spaces (`  -h, --help`,
        // `      --listen <LISTEN>`); its description and the wrapped text below it by more.
        let indent = line.len() - line.trim_start().len();
        let head = line.trim_start();
        let head = match head.as_bytes() {
            [b'-', c, b',', b' ', ..] if c.is_ascii_alphabetic() => &head[4..],
            _ => head,
        };
        if (2..=6).contains(&indent) && head.starts_with("--") {
            let name: String = head
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '=')
                .collect();
            options.insert(
                name.clone(),
                HelpOption {
                    variable: None,
                    default: None,
                },
            );
            current = Some(name);
            continue;
        }
        let Some(option) = current.as_ref().and_then(|name| options.get_mut(name)) else {
            continue;
        };
        if let Some(rest) = line.trim().strip_prefix("[env: ") {
            // `[env: NAME=]`, or `[env: NAME]` where clap hides the value.
            let name = rest.split(['=', ']']).next().unwrap_or_default();
            option.variable = Some(name.to_string());
        }
        if let Some(rest) = line.trim().strip_prefix("[default: ") {
            option.default = Some(rest.trim_end_matches(']').to_string());
        }
    }
    options.remove("--help");
    options.remove("--version");
    options
}

/// One row of the options table: its line on the page and its first three cells.
#[derive(Debug)]
struct TableRow {
    line: usize,
    option: String,
    variable: String,
    default: String,
}

/// A cell that is empty or one code span: its text.
fn code_cell(cell: &str) -> Option<String> {
    let cell = cell.trim();
    if cell.is_empty() {
        return Some(String::new());
    }
    let inner = cell.strip_prefix('`')?.strip_suffix('`')?;
    (!inner.contains('`')).then(|| inner.to_string())
}

/// The rows of the `## Options` table of [`OPTIONS_PAGE`], and what is malformed in it.
fn options_table() -> (Vec<TableRow>, Vec<String>) {
    let text = read(&root().join(OPTIONS_PAGE));
    let lines = prose_lines(&text);
    let start = lines
        .iter()
        .position(|(_, l)| *l == "## Options")
        .unwrap_or_else(|| panic!("{OPTIONS_PAGE} has no `## Options` section"));
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    let mut header_seen = false;
    for &(line_no, line) in lines[start + 1..]
        .iter()
        .take_while(|(_, l)| !l.starts_with("## "))
    {
        if !line.starts_with('|') {
            continue;
        }
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        let at = format!("{OPTIONS_PAGE}:{line_no}");
        if !header_seen {
            header_seen = true;
            if cells != OPTIONS_HEADER {
                problems.push(format!(
                    "{at}: the header must be {OPTIONS_HEADER:?}, not {cells:?}"
                ));
            }
            continue;
        }
        if cells
            .iter()
            .all(|c| c.chars().all(|ch| ch == '-' || ch == ':'))
        {
            continue;
        }
        if cells.len() != OPTIONS_HEADER.len() {
            problems.push(format!(
                "{at}: {} cells, not {} (a `|` inside a cell?): {line}",
                cells.len(),
                OPTIONS_HEADER.len()
            ));
            continue;
        }
        match (
            code_cell(cells[0]),
            code_cell(cells[1]),
            code_cell(cells[2]),
        ) {
            (Some(option), Some(variable), Some(default)) if option.starts_with("--") => {
                rows.push(TableRow {
                    line: line_no,
                    option,
                    variable,
                    default,
                })
            }
            _ => problems.push(format!(
                "{at}: the option, variable and default cells must each be one `code` span \
                 (or empty), the option a single `--name`: {line}"
            )),
        }
    }
    if !header_seen {
        problems.push(format!(
            "{OPTIONS_PAGE}: the `## Options` section has no table"
        ));
    }
    (rows, problems)
}

#[test]
fn the_options_table_is_serve_help() {
    let help = serve_help_options();
    assert!(
        help.len() > 40 && help.contains_key("--listen") && help.contains_key("--no-pin"),
        "serve --help parsed into {} options: {help:?}",
        help.len()
    );
    let (rows, mut failures) = options_table();
    let mut listed: BTreeMap<&str, usize> = BTreeMap::new();
    for row in &rows {
        let at = format!("{OPTIONS_PAGE}:{}", row.line);
        if let Some(first) = listed.insert(&row.option, row.line) {
            failures.push(format!(
                "{at}: `{}` has a row already, at line {first}",
                row.option
            ));
        }
        let Some(option) = help.get(&row.option) else {
            failures.push(format!(
                "{at}: `{}` is not an option of `tickcast serve` (see serve --help)",
                row.option
            ));
            continue;
        };
        let variable = option.variable.as_deref().unwrap_or_default();
        if row.variable != variable {
            failures.push(format!(
                "{at}: `{}` has the variable `{}` in the table, `{variable}` in serve --help",
                row.option, row.variable
            ));
        }
        let default = option.default.as_deref().unwrap_or_default();
        if row.default != default {
            failures.push(format!(
                "{at}: `{}` has the default `{}` in the table, `{default}` in serve --help",
                row.option, row.default
            ));
        }
    }
    for (name, option) in &help {
        if !listed.contains_key(name.as_str()) {
            let cell = |v: &Option<String>| v.as_ref().map_or(String::new(), |v| format!("`{v}`"));
            failures.push(format!(
                "`{name}` (serve --help) has no row in {OPTIONS_PAGE}'s options table: add \
                 | `{name}` | {} | {} | ... |",
                cell(&option.variable),
                cell(&option.default)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "the options table and serve --help differ:\n{}",
        failures.join("\n")
    );
}
