//! Renders haproxy.cfg from the operator's Handlebars template: the only module that sees
//! `handlebars`.
//!
//! Strict mode: a variable the context does not have is an error, not an empty string. Untrusted
//! text never reaches the file raw (invariant 9): every `{{value}}` written into the file passes an
//! escape function that checks it is a plain HAProxy token (no whitespace, `#`, quote, backslash or
//! control character) and fails the render otherwise, naming where the value came from.
//! `{{{triple}}}` output bypasses that check, so the shipped template never uses it.
//!
//! Helpers: `{{default a b ...}}` writes the first of its values that is present and not empty
//! (`{{default tags.Name instance_id}}`: strict mode makes a bare `{{tags.Name}}` an error for an
//! instance without that tag). Its output passes the same token check.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use std::collections::{BTreeMap, BTreeSet};

use handlebars::Handlebars;
use handlebars::template::{Parameter, Template, TemplateElement};
use serde::Serialize;
use serde_json::Value;

use crate::model::is_haproxy_token;

/// A template that cannot be read, compiled or rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot read template `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot hand the template its context")]
    Context(#[source] serde_json::Error),
    #[error("template `{}` is invalid: {message}", path.display())]
    Compile { path: PathBuf, message: String },
    #[error("template `{}` failed to render: {message}", path.display())]
    Render { path: PathBuf, message: String },
    #[error(
        "refusing to write {value:?} from `{origin}` into haproxy.cfg: it is not a plain HAProxy token (whitespace, `#`, quotes, backslashes, `$`, `%`, braces, control and invisible format characters are refused); fix the value or stop rendering it"
    )]
    UnsafeValue { value: String, origin: String },
}

/// A compiled template.
pub(crate) struct Renderer {
    registry: Handlebars<'static>,
    path: PathBuf,
    /// Whether the template's text names `backends`.
    names_backends: bool,
    /// Whether the template can reach a server's tags (see [`reaches_tags`]).
    reaches_tags: bool,
    refused: Arc<Mutex<Vec<String>>>,
}

/// The lists of the context an `{{#each}}` may walk without reaching a server's own fields.
const LISTS: [&str; 5] = ["pools", "servers", "skipped", "backends", "tags"];

/// Whether a template's text can reach a server's tags: it names `tags`, enumerates keys
/// (`@key`), looks a name up (`lookup`), or walks with `{{#each}}` something that is not one of
/// the context's lists (a server itself, `{{#each this}}`, whose fields include `tags`).
/// Otherwise no path in it can lead to them: paths are written in the template's text.
fn reaches_tags(text: &str) -> bool {
    if text.contains("tags") || text.contains("@key") || text.contains("lookup") {
        return true;
    }
    text.match_indices("#each").any(|(at, _)| {
        let walked = text[at + "#each".len()..]
            .trim_start()
            .split(|c: char| c.is_whitespace() || c == '}' || c == '~')
            .next()
            .unwrap_or("");
        let last = walked.rsplit(['.', '/']).next().unwrap_or("");
        !LISTS.contains(&last)
    })
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The name the template is registered under, which handlebars' own messages quote: its file
/// name (`haproxy.cfg.hbs`), not the output's.
fn template_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || "template".to_owned(),
        |name| name.to_string_lossy().into_owned(),
    )
}

impl Renderer {
    /// Compiles template text; `path` names it in errors.
    pub(crate) fn compile(text: &str, path: &Path) -> Result<Renderer, RenderError> {
        let refused = Arc::new(Mutex::new(Vec::new()));
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        let sink = Arc::clone(&refused);
        registry.register_escape_fn(move |value: &str| {
            if !is_haproxy_token(value) {
                sink.lock()
                    .expect("escape sink lock")
                    .push(value.to_owned());
            }
            value.to_owned()
        });
        let sink = Arc::clone(&refused);
        registry.register_helper(
            "default",
            Box::new(
                move |helper: &handlebars::Helper<'_>,
                      _: &Handlebars<'_>,
                      _: &handlebars::Context,
                      _: &mut handlebars::RenderContext<'_, '_>,
                      out: &mut dyn handlebars::Output|
                      -> handlebars::HelperResult {
                    let value = helper
                        .params()
                        .iter()
                        .filter(|param| !param.is_value_missing())
                        .map(|param| match param.value() {
                            Value::String(text) => text.clone(),
                            Value::Null => String::new(),
                            other => other.to_string(),
                        })
                        .find(|text| !text.is_empty())
                        .unwrap_or_default();
                    if !is_haproxy_token(&value) {
                        sink.lock().expect("escape sink lock").push(value.clone());
                    }
                    out.write(&value)?;
                    Ok(())
                },
            ),
        );
        // `{{position}}`: 1 for the first server of a backend, the id HAProxy gives a server
        // it is not given one. A helper, not a field of each server: a twelfth field would
        // make every server's JSON object two B-tree nodes instead of one.
        registry.register_helper(
            "position",
            Box::new(
                |helper: &handlebars::Helper<'_>,
                 _: &Handlebars<'_>,
                 _: &handlebars::Context,
                 rc: &mut handlebars::RenderContext<'_, '_>,
                 out: &mut dyn handlebars::Output|
                 -> handlebars::HelperResult {
                    // The block `{{#each servers}}` pushes has the path `...servers.N`; any
                    // other loop's index (a tag's, a pool's) is not a server's position.
                    let index = rc
                        .block()
                        .filter(|_| helper.params().is_empty())
                        .filter(|block| {
                            let path = block.base_path();
                            path.len() >= 2 && path[path.len() - 2] == "servers"
                        })
                        .and_then(|block| block.get_local_var("index"))
                        .and_then(Value::as_u64)
                        .ok_or_else(|| {
                            handlebars::RenderErrorReason::Other(
                                "`position` takes no argument and is only defined directly inside `{{#each servers}}`"
                                    .to_owned(),
                            )
                        })?;
                    out.write(&(index + 1).to_string())?;
                    Ok(())
                },
            ),
        );
        registry
            .register_template_string(&template_name(path), text)
            .map_err(|error| RenderError::Compile {
                path: path.to_owned(),
                message: error.to_string(),
            })?;
        if let Err(message) = partials_cannot_recurse(text) {
            return Err(RenderError::Compile {
                path: path.to_owned(),
                message,
            });
        }
        Ok(Renderer {
            registry,
            path: path.to_owned(),
            names_backends: text.contains("backends"),
            reaches_tags: reaches_tags(text),
            refused,
        })
    }

    /// Whether the template's text names `backends` anywhere: a context value it never names
    /// cannot be reached (paths and `lookup` keys are written in the template).
    pub(crate) fn names_backends(&self) -> bool {
        self.names_backends
    }

    /// Whether the template can reach a server's tags; when it cannot, the context leaves
    /// them out.
    pub(crate) fn reaches_tags(&self) -> bool {
        self.reaches_tags
    }

    /// Renders the template with `context`.
    pub(crate) fn render(&self, context: &impl Serialize) -> Result<String, RenderError> {
        // One conversion to JSON: handlebars' `render` would convert the value it is given once
        // more (a second copy of every server, the largest allocation of a run).
        let context =
            handlebars::Context::from(serde_json::to_value(context).map_err(RenderError::Context)?);
        self.refused.lock().expect("escape sink lock").clear();
        let text = self
            .registry
            .render_with_context(&template_name(&self.path), &context)
            .map_err(|error| RenderError::Render {
                path: self.path.clone(),
                message: plain_message(&error.to_string()),
            })?;
        if let Some(value) = self.refused.lock().expect("escape sink lock").first() {
            return Err(RenderError::UnsafeValue {
                origin: find(context.data(), value)
                    .unwrap_or_else(|| "a template expression".to_owned()),
                value: value.clone(),
            });
        }
        Ok(text)
    }
}

/// Handlebars renders partials by recursion with no depth limit: a partial that includes itself
/// (directly or through others) overflows the stack and aborts the process. Nothing in the
/// template's context is nested deeply enough to need recursion, so any cycle among inline
/// partials is refused, and so are partial names computed at render time (they could form one).
fn partials_cannot_recurse(text: &str) -> Result<(), String> {
    let Ok(template) = Template::compile(text) else {
        return Ok(()); // the registry already reported why it does not compile
    };
    let mut includes = BTreeSet::new();
    let mut defined = BTreeMap::new();
    walk(&template, &mut includes, &mut defined)?;
    match defined
        .keys()
        .find(|start| includes_itself(start, &defined))
    {
        Some(start) => Err(format!(
            "inline partial `{start}` includes itself (directly or through other partials): that recursion has no end"
        )),
        None => Ok(()),
    }
}

/// Depth-first from `start` through the partials each inline partial includes.
fn includes_itself(start: &String, defined: &BTreeMap<String, BTreeSet<String>>) -> bool {
    let mut stack: Vec<&String> = vec![start];
    let mut seen: BTreeSet<&String> = BTreeSet::new();
    while let Some(name) = stack.pop() {
        for next in defined.get(name).into_iter().flatten() {
            if next == start {
                return true;
            }
            if seen.insert(next) {
                stack.push(next);
            }
        }
    }
    false
}

/// Partial names this template includes, and inline partials it defines, with theirs.
fn walk(
    template: &Template,
    includes: &mut BTreeSet<String>,
    defined: &mut BTreeMap<String, BTreeSet<String>>,
) -> Result<(), String> {
    for element in &template.elements {
        match element {
            TemplateElement::PartialExpression(partial)
            | TemplateElement::PartialBlock(partial) => {
                match &partial.name {
                    Parameter::Name(_) | Parameter::Path(_) => {
                        let name = partial.name.as_name().unwrap_or_default();
                        includes.insert(name.trim_matches(['"', '\'']).to_owned());
                    }
                    Parameter::Literal(serde_json::Value::String(name)) => {
                        includes.insert(name.clone());
                    }
                    _ => {
                        return Err(
                            "partial names computed at render time (`{{> (...)}}`) are not supported"
                                .to_owned(),
                        );
                    }
                }
                if let Some(inner) = &partial.template {
                    walk(inner, includes, defined)?;
                }
            }
            TemplateElement::DecoratorBlock(decorator)
                if decorator.name.as_name() == Some("inline") =>
            {
                let name = match decorator.params.first() {
                    Some(Parameter::Literal(serde_json::Value::String(name))) => name.clone(),
                    Some(other) => other.as_name().unwrap_or_default().to_owned(),
                    None => String::new(),
                };
                let mut inner_includes = BTreeSet::new();
                if let Some(inner) = &decorator.template {
                    walk(inner, &mut inner_includes, defined)?;
                }
                defined.entry(name).or_default().extend(inner_includes);
            }
            TemplateElement::HelperBlock(helper) => {
                for inner in helper.template.iter().chain(helper.inverse.iter()) {
                    walk(inner, includes, defined)?;
                }
            }
            TemplateElement::DecoratorBlock(decorator) => {
                if let Some(inner) = &decorator.template {
                    walk(inner, includes, defined)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Handlebars' message without Rust's debug syntax: its strict-mode error names the variable
/// as `Some("name")`.
fn plain_message(message: &str) -> String {
    let message = message.replace(
        "Failed to access variable in strict mode None",
        "strict mode: a value that does not exist (`lookup` of a missing key?)",
    );
    let Some(start) = message.find("Some(\"") else {
        return message;
    };
    let rest = &message[start + 6..];
    match rest.find("\")") {
        Some(end) => format!(
            "{}`{}` does not exist (see the template variables: docs/src/template.md){}",
            message[..start].replace("Failed to access variable in strict mode ", "strict mode: "),
            &rest[..end],
            &rest[end + 2..]
        ),
        None => message.clone(),
    }
}

/// The path of the first string equal to `needle` in `value`, such as
/// `pools[0].servers[1].tags.Name`.
fn find(value: &Value, needle: &str) -> Option<String> {
    match value {
        Value::String(text) if text == needle => Some(String::new()),
        Value::Array(items) => items.iter().enumerate().find_map(|(index, item)| {
            find(item, needle).map(|rest| format!("[{index}]{}", dotted(&rest)))
        }),
        Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            find(item, needle).map(|rest| format!(".{key}{}", dotted(&rest)))
        }),
        _ => None,
    }
    .map(|path| path.trim_start_matches('.').to_owned())
}

fn dotted(rest: &str) -> String {
    if rest.is_empty() || rest.starts_with('[') {
        rest.to_owned()
    } else {
        format!(".{rest}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(template: &str, context: &Value) -> Result<String, RenderError> {
        Renderer::compile(template, Path::new("t.hbs"))?.render(context)
    }

    #[test]
    fn tags_are_reached_by_name_by_enumeration_or_by_walking_a_server() {
        let reached = [
            "{{#each pools}}{{#each servers}}{{tags.Name}}{{/each}}{{/each}}",
            "{{#each pools}}{{#each servers}}{{#each this}}{{@index}}{{/each}}{{/each}}{{/each}}",
            "{{#each pools}}{{#each servers}}{{~#each .~}}x{{/each}}{{/each}}{{/each}}",
            "{{#each pools.[0].servers.[0]}}{{@last}}{{/each}}",
            "{{#each backends}}{{@key}}{{/each}}",
            "{{#each pools}}{{#each servers}}{{lookup this name}}{{/each}}{{/each}}",
            "{{#each (helper servers)}}{{/each}}",
        ];
        for template in reached {
            assert!(reaches_tags(template), "{template}");
        }
        let unreached = [
            include_str!("../../templates/haproxy.cfg.hbs"),
            "{{#each pools}}{{#each servers}}{{name}}{{/each}}{{#each skipped}}{{/each}}{{/each}}",
            "{{#each @root.pools}}{{#each ../backends}}{{/each}}{{~#each  servers~}}{{/each}}{{/each}}",
        ];
        for template in unreached {
            assert!(!reaches_tags(template), "{template}");
        }
    }

    #[test]
    fn position_counts_from_one_in_the_enclosing_each_and_nowhere_else() {
        let servers = json!({"servers": [{"booting": false}, {"booting": true}]});
        assert_eq!(
            render(
                "{{#each servers}}{{position}}{{#if booting}}/{{position}}{{/if}} {{/each}}",
                &servers
            )
            .unwrap(),
            "1 2/2 "
        );
        // Anywhere else, another loop's index is not a server's position.
        let nested = json!({
            "pools": [{"servers": [{"tags": {"a": "1"}}], "skipped": [{"id": "x"}]}],
        });
        for template in [
            "{{position}}",
            "{{#each pools}}{{position}}{{/each}}",
            "{{#each pools}}{{#each servers}}{{#each tags}}{{position}}{{/each}}{{/each}}{{/each}}",
            "{{#each pools}}{{#each skipped}}{{position}}{{/each}}{{/each}}",
            "{{#each pools}}{{#each servers}}{{position 5}}{{/each}}{{/each}}",
        ] {
            let error = render(template, &nested).unwrap_err();
            assert!(
                error.to_string().contains("failed to render")
                    && format!("{error:?}").contains("only defined directly inside"),
                "{template}: {error:?}"
            );
        }
        assert_eq!(
            render(
                "{{#each pools}}{{#each servers as |s|}}{{position}}{{/each}}{{/each}}",
                &nested
            )
            .unwrap(),
            "1"
        );
    }

    #[test]
    fn tokens() {
        for good in [
            "i-0abc",
            "10.0.0.1",
            "web_1.a-b",
            "/run/haproxy/admin.sock",
            "a:b",
            "",
        ] {
            assert!(is_haproxy_token(good), "{good:?}");
        }
        for bad in [
            "a b",
            "a\tb",
            "a\nb",
            "a#b",
            "a\"b",
            "a'b",
            "a\\b",
            "a\u{0}b",
            "a\u{a0}b",
            // Issue 10, class 4: environment expansion, bidi and zero-width characters.
            "${AWS_SECRET_ACCESS_KEY}.x",
            "$HOME",
            "web\u{202E}1",
            "a\u{200B}b",
            "\u{FEFF}x",
            "a\u{2066}b",
            "%[src]",
            "a{b}",
            "50%",
        ] {
            assert!(!is_haproxy_token(bad), "{bad:?}");
        }
    }

    #[test]
    fn renders_values() {
        let text = render(
            "server {{name}} {{addr}}:{{port}}",
            &json!({"name": "i-1", "addr": "10.0.0.1", "port": 80}),
        )
        .unwrap();
        assert_eq!(text, "server i-1 10.0.0.1:80");
    }

    #[test]
    fn missing_variable_is_an_error_in_strict_mode() {
        let error = render("server {{nmae}}", &json!({"name": "i-1"}))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("t.hbs") && error.contains("`nmae` does not exist"),
            "{error}"
        );
        assert!(!error.contains("Some("), "no Rust debug syntax: {error}");
    }

    #[test]
    fn syntax_error_names_the_template() {
        let error = render("{{#each pools}}", &json!({}))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("t.hbs") && error.contains("invalid"),
            "{error}"
        );
    }

    #[test]
    fn injected_values_are_refused_with_their_origin() {
        let template = "{{#each servers}}server {{name}} {{tags.Name}}\n{{/each}}";
        for hostile in ["web\n    server evil 6.6.6.6:80", "a b", "x#y", "q\"uote"] {
            let context = json!({"servers": [{"name": "i-1", "tags": {"Name": "ok"}}, {"name": "i-2", "tags": {"Name": hostile}}]});
            let error = render(template, &context).unwrap_err();
            let message = error.to_string();
            assert!(
                matches!(error, RenderError::UnsafeValue { .. }),
                "{message}"
            );
            assert!(message.contains("servers[1].tags.Name"), "{message}");
        }
    }

    /// Issue 9, item 9: the README's `{{tags.Name}}` fails in strict mode for an instance
    /// without the tag; `default` falls back, and its output is checked like any value.
    #[test]
    fn issue_9_9_default_falls_back_to_the_next_present_value() {
        let template = "{{#each servers}}{{default tags.Name instance_id}} {{/each}}";
        let context = json!({"servers": [
            {"instance_id": "i-1", "tags": {"Name": "web-1"}},
            {"instance_id": "i-2", "tags": {}},
            {"instance_id": "i-3", "tags": {"Name": ""}},
        ]});
        assert_eq!(render(template, &context).unwrap(), "web-1 i-2 i-3 ");
        let hostile = json!({"servers": [{"instance_id": "i-1", "tags": {"Name": "a b"}}]});
        assert!(matches!(
            render(template, &hostile),
            Err(RenderError::UnsafeValue { .. })
        ));
    }

    /// Issue 10, class 8: a template whose partials recurse is a template error, not a stack
    /// overflow that aborts the process.
    #[test]
    fn class_8_recursive_partials_are_refused_at_compile() {
        for template in [
            "{{#*inline \"a\"}}{{> a}}{{/inline}}{{> a}}",
            "{{#*inline \"a\"}}x{{> b}}{{/inline}}{{#*inline \"b\"}}{{#if y}}{{> a}}{{/if}}{{/inline}}{{> a}}",
            "{{#*inline \"a\"}}{{#each pools}}{{> c}}{{/each}}{{/inline}}{{#*inline \"c\"}}{{> b}}{{/inline}}{{#*inline \"b\"}}{{> a}}{{/inline}}{{> a}}",
        ] {
            let error = Renderer::compile(template, Path::new("t.hbs"))
                .unwrap_err()
                .to_string();
            assert!(error.contains("includes itself"), "{template}: {error}");
        }
        let error = Renderer::compile("{{> (lookup this \"x\")}}", Path::new("t.hbs"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("computed at render time"), "{error}");
        // Partials that do not recurse are fine.
        let ok = Renderer::compile(
            "{{#*inline \"server\"}}server {{name}}\n{{/inline}}{{#each servers}}{{> server}}{{/each}}",
            Path::new("t.hbs"),
        )
        .unwrap();
        assert_eq!(
            ok.render(&json!({"servers": [{"name": "i-1"}]})).unwrap(),
            "server i-1\n"
        );
    }

    #[test]
    fn values_in_conditions_are_not_written_and_not_checked() {
        let context = json!({"tags": {"Name": "a b"}});
        assert_eq!(
            render("{{#if tags.Name}}named{{/if}}", &context).unwrap(),
            "named"
        );
    }
}
