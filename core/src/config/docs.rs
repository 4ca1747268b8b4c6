//! The option reference of `docs/CONFIG.md`, generated from the option
//! table so that the documentation cannot drift from the parser.

use super::options::{JOB_OPTIONS, STATEMENTS};

/// Markdown tables of every job option and global statement.
pub fn reference_markdown() -> String {
    let mut out = String::from(
        "### Job options\n\n| option | default | repeatable | meaning |\n|---|---|---|---|\n",
    );
    for def in JOB_OPTIONS {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            def.usage.replace('|', "\\|"),
            def.default,
            if def.repeatable { "yes" } else { "" },
            def.doc
        ));
    }
    out.push_str(
        "\n### Global statements\n\n| statement | repeatable | meaning |\n|---|---|---|\n",
    );
    for def in STATEMENTS {
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            def.usage,
            if def.repeatable { "yes" } else { "" },
            def.doc
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEGIN: &str =
        "<!-- BEGIN GENERATED: option reference (cargo test; PMTR_BLESS=1 rewrites) -->\n";
    const END: &str = "<!-- END GENERATED -->";

    /// `docs/CONFIG.md` holds exactly what the table generates. Run the
    /// tests with `PMTR_BLESS=1` to rewrite it after changing an option.
    #[test]
    fn config_md_matches_the_option_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/CONFIG.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let start = doc.find(BEGIN).expect("BEGIN marker in docs/CONFIG.md") + BEGIN.len();
        let end = doc.find(END).expect("END marker in docs/CONFIG.md");
        let generated = reference_markdown();
        if std::env::var_os("PMTR_BLESS").is_some() {
            let updated = format!("{}{generated}{}", &doc[..start], &doc[end..]);
            std::fs::write(path, updated).unwrap();
            return;
        }
        assert_eq!(
            doc[start..end],
            generated,
            "docs/CONFIG.md is stale: run `PMTR_BLESS=1 cargo test -p pmtr-core`"
        );
    }

    #[test]
    fn every_option_appears() {
        let text = reference_markdown();
        for def in JOB_OPTIONS {
            assert!(text.contains(&format!("`{}", def.name)));
        }
        for def in STATEMENTS {
            assert!(text.contains(&def.name()));
        }
    }
}
