//! The documentation's examples as the tests read them: a fenced block after a marker, and a
//! shell command with its `\` continuation lines joined as the shell joins them.

/// The YAML block in docs/configuration.md that follows the marker `<!-- name -->`.
pub fn doc_block(name: &str) -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md")).unwrap();
    let marker = format!("<!-- {name} -->");
    let at = doc
        .find(&marker)
        .unwrap_or_else(|| panic!("no {marker} in docs/configuration.md"));
    fenced(&doc[at..], "yaml").to_owned()
}

/// The body of the first ```` ```lang ```` block in `text`.
pub fn fenced<'t>(text: &'t str, lang: &str) -> &'t str {
    let open = format!("```{lang}\n");
    let start = text.find(&open).unwrap_or_else(|| panic!("no {open:?} block")) + open.len();
    &text[start..start + text[start..].find("```").unwrap()]
}

/// The first command in `text` whose line starts with `start`, continuation lines joined;
/// empty when there is none.
pub fn shell_command(text: &str, start: &str) -> String {
    let mut cmd = String::new();
    for line in text.lines().skip_while(|l| !l.starts_with(start)) {
        match line.strip_suffix('\\') {
            Some(part) => cmd.push_str(part),
            None => {
                cmd.push_str(line);
                break;
            }
        }
    }
    cmd
}
