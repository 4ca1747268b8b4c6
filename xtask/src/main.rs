//! The workspace's build tasks. `generate` writes the man pages and shell
//! completions of `pmtr`, `pmtr-ctl`, `pmtr-rptserver` and `onconnect`
//! from their clap definitions, so that they cannot drift from `--help`:
//!
//!     cargo xtask generate OUTDIR
//!
//! gives OUTDIR/man/*.1 and OUTDIR/completions/{bash,zsh,fish} files.

use std::fs::File;
use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;
use pmtr::programs::ctl::cli::CtlArgs;
use pmtr::programs::onconnect::cli::Args as OnconnectArgs;
use pmtr::programs::pmtr::cli::Args;
use pmtr_rptserver::cli::Args as RptserverArgs;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["generate", out] => match generate(Path::new(out)) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("xtask: generate {out}: {error}");
                std::process::ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("usage: cargo xtask generate OUTDIR");
            std::process::ExitCode::from(2)
        }
    }
}

fn generate(out: &Path) -> std::io::Result<()> {
    let man = out.join("man");
    let completions = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let commands = [
        (Args::command(), "pmtr"),
        (CtlArgs::command(), "pmtr-ctl"),
        (RptserverArgs::command(), "pmtr-rptserver"),
        (OnconnectArgs::command(), "onconnect"),
    ];
    for (command, name) in commands {
        let mut page = File::create(man.join(format!("{name}.1")))?;
        clap_mangen::Man::new(command.clone()).render(&mut page)?;
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            clap_complete::generate_to(shell, &mut command.clone(), name, &completions)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_pages_and_completions_are_generated() {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path()).unwrap();
        let page = std::fs::read_to_string(dir.path().join("man/pmtr-ctl.1")).unwrap();
        assert!(page.contains(".TH pmtr-ctl 1"), "{page}");
        assert!(page.contains("status"));
        let page = std::fs::read_to_string(dir.path().join("man/pmtr.1")).unwrap();
        assert!(page.contains("\\-\\-config"));
        assert!(dir.path().join("man/pmtr-rptserver.1").exists());
        assert!(dir.path().join("man/onconnect.1").exists());
        for file in [
            "pmtr.bash",
            "_pmtr",
            "pmtr.fish",
            "pmtr-ctl.bash",
            "_pmtr-ctl",
            "pmtr-ctl.fish",
        ] {
            assert!(dir.path().join("completions").join(file).exists(), "{file}");
        }
    }
}
