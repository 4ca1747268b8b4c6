//! The configuration language of `pmtr.conf`: text in, a validated
//! [`Config`] or every error of the file out. Pure: no syscalls.

mod checks;
mod diagnostic;
mod docs;
pub mod envfile;
mod include;
mod lex;
mod model;
mod options;
mod parse;
mod validate;
mod values;

pub use diagnostic::{render_all, Diagnostic, Location, Severity, Source};
pub use docs::reference_markdown;
pub use include::{load, Files, IncludePattern, Loaded, MAX_INCLUDE_DEPTH};
pub use model::{
    CgroupLimits, Config, CpuSet, EnvFile, EnvVar, Extras, Globals, Health, HealthCheck, Instance,
    Job, JobExtras, Limit, LogFiles, Origin, Output, Readiness, Resource, RestartPolicy, Rotate,
    StopSignal, UdpEndpoint, Ulimit,
};
pub use options::{OptionDef, StatementDef, Syntax, JOB_OPTIONS, STATEMENTS};
pub use values::duration_millis;

/// Parses and validates a whole configuration file that includes no
/// other. On failure, returns every error found, in file order.
pub fn parse(source: &[u8]) -> Result<Config, Vec<Diagnostic>> {
    load("pmtr.conf", source.to_vec(), &include::NoFiles).result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<(usize, usize, String)> {
        match parse(text.as_bytes()) {
            Ok(config) => panic!("accepted: {config:?}"),
            Err(errors) => errors
                .into_iter()
                .map(|e| (e.at.line, e.at.column, e.message))
                .collect(),
        }
    }

    #[test]
    fn an_empty_file_is_valid() {
        assert_eq!(parse(b"").unwrap(), Config::default());
        assert_eq!(parse(b"\n\n# nothing\n").unwrap(), Config::default());
    }

    #[test]
    fn the_v1_3_manual_example_is_accepted() {
        let text = "
  job {
    name app-webserver
    cmd /home/app/webserver.py 
  }

  job {
    name app-server
    dir /home/app
    cmd /home/app/server -c 20 
    out server.out
    err server.err
    user app
  }
  # this is a comment
  job {
    name geo-server
    cmd /usr/bin/server -e \"New York\"
  }
  job {
    name setup-ramdisk
    cmd /bin/mkdir /dev/shm/app-ramdisk
    wait
    once
  }
  report to udp://127.0.0.1:9999
  listen on udp://0.0.0.0:10000
";
        let config = parse(text.as_bytes()).unwrap();
        let names: Vec<&str> = config.jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(
            names,
            ["app-webserver", "app-server", "geo-server", "setup-ramdisk"]
        );
        assert_eq!(config.jobs[2].cmd, ["/usr/bin/server", "-e", "New York"]);
        assert_eq!(config.jobs[1].stdout, Output::File("server.out".into()));
        assert!(config.jobs[3].wait && config.jobs[3].once);
        assert_eq!(config.globals.report_to.len(), 1);
        assert_eq!(config.origins.len(), 4);
    }

    #[test]
    fn the_upstream_manual_examples_are_accepted() {
        let text = "
job {
  name tunnel
  cmd /usr/bin/ssh -i key -TNL 5901:127.0.0.1:5901 192.168.0.1
}
job {
  name demo-daemon
  dir /home/demo
  cmd /usr/bin/demod
  user demo
  env HOME=/home/demo
  cpu 0-8
  nice 5
  ulimit -n 30
  bounce every 1d
  depends {
    /home/demo/.demo/demo.conf
  }
}
job {
  name capture
  dir /data
  cmd /usr/sbin/tcpdump -i eth0 -s 0 -G 10 -w %Y%m%d%H%M%S.pcap
}
job {
  name gstreamer-job
  cmd /usr/bin/onconnect -p 5000 /path/to/gstreamer-job
}
report to udp://239.0.0.1:9999@eth2
";
        let config = parse(text.as_bytes()).unwrap();
        assert_eq!(config.jobs.len(), 4);
        assert_eq!(
            config.jobs[1].extras.depends,
            ["/home/demo/.demo/demo.conf"]
        );
    }

    #[test]
    fn free_layout_several_options_on_a_line() {
        let config = parse(b"job { name a  disable once order 2\ncmd /bin/true\n}").unwrap();
        let job = &config.jobs[0];
        assert!(job.disabled && job.once);
        assert_eq!(job.order, 2);
    }

    #[test]
    fn cmd_takes_the_rest_of_its_line_even_keywords() {
        let config = parse(b"job {\nname a\ncmd /bin/echo name once }\n}").unwrap();
        assert_eq!(config.jobs[0].cmd, ["/bin/echo", "name", "once", "}"]);
        let config = parse(b"job {\nname a\ncmd /bin/echo \"}\"\n}").unwrap();
        assert_eq!(config.jobs[0].cmd, ["/bin/echo", "}"]);
    }

    #[test]
    fn a_word_on_the_line_after_cmd_gets_a_hint() {
        let found = errors("job {\n name a\n cmd /bin/server\n   --verbose\n}");
        assert_eq!(
            found[0].2,
            "unknown option `--verbose` (arguments of `cmd` must be on the `cmd` line)"
        );
    }

    #[test]
    fn a_brace_swallowed_by_cmd_is_explained() {
        let found = errors("job { name a\ncmd /bin/true }\n");
        assert_eq!(found.len(), 1);
        assert!(found[0].2.contains("argument of `cmd`"), "{found:?}");
    }

    #[test]
    fn every_error_of_the_file_is_reported_at_once_in_order() {
        let text = "job {\n  name a\n  onse\n  cmd /bin/true\n}\njob {\n  name b\n  cmd sleep 1\n  nice 40\n}\njob {\n  name a\n  cmd /bin/true\n}\nbogus\n";
        let found = errors(text);
        let lines: Vec<usize> = found.iter().map(|e| e.0).collect();
        assert_eq!(lines, [3, 8, 9, 12, 15], "{found:?}");
        assert_eq!(found[0].2, "unknown option `onse`; did you mean `once`?");
        assert_eq!((found[0].0, found[0].1), (3, 3));
        assert!(found[1].2.contains("absolute path"));
        assert!(found[2].2.contains("out of range"));
        assert!(found[3]
            .2
            .contains("duplicate job name `a` (first defined on line 1)"));
        assert!(found[4].2.contains("unknown statement `bogus`"));
    }

    #[test]
    fn missing_name_and_cmd() {
        let found = errors("job {\n  once\n}\n");
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].2, "this job has no `name`");
        assert_eq!(found[1].2, "this job has no `cmd`");
        let found = errors("job {\n  name web\n}\n");
        assert_eq!(found[0].2, "job `web` has no `cmd`");
    }

    #[test]
    fn unterminated_blocks() {
        let found = errors("job {\n  name a\n  cmd /bin/true\n");
        assert_eq!(found.len(), 1);
        assert!(
            found[0].2.contains("has no closing `}` (job `a`)"),
            "{found:?}"
        );
        let found =
            errors("job {\n  name a\n  cmd /bin/true\njob {\n  name b\n  cmd /bin/true\n}\n");
        assert_eq!(found.len(), 1);
        assert!(found[0].2.contains("not closed before this `job`"));
        assert_eq!(found[0].0, 4);
    }

    #[test]
    fn structural_mistakes() {
        assert!(errors("job\n  name a\n")[0]
            .2
            .contains("expected `{` after `job`"));
        assert!(errors("}\n")[0].2.contains("unexpected `}`"));
        assert!(errors("name a\n")[0].2.contains("job option"));
        assert!(errors("jb {\n")[0].2.contains("did you mean `job`?"));
        assert!(
            errors("job {\n name a\n cmd /bin/true\n report to udp://1.2.3.4:5\n}")[0]
                .2
                .contains("global statement")
        );
        assert!(errors("job {\n name a b\n cmd /bin/true\n}")[0]
            .2
            .contains("unexpected `b` after `name`: it takes one value"));
        assert!(errors("job {\n name a\n cmd /bin/true\n once x\n}")[0]
            .2
            .contains("takes no value"));
        assert!(errors("job {\n name\n cmd /bin/true\n}")[0]
            .2
            .contains("`name` needs a value"));
        assert!(errors("report to udp://1.2.3.4:5 extra")[0]
            .2
            .contains("unexpected `extra`"));
    }

    #[test]
    fn unterminated_quote_is_reported() {
        let found = errors("job {\n name a\n cmd /bin/echo \"abc\n}\n");
        assert!(found[0].2.contains("unterminated quote"));
        assert_eq!((found[0].0, found[0].1), (3, 16));
    }

    #[test]
    fn configs_compare_equal_when_the_jobs_are_the_same() {
        let a = parse(b"job {\nname a\ncmd /bin/true\n}").unwrap();
        let b = parse(b"job { name a\n  cmd   /bin/true\n}").unwrap();
        assert_eq!(a.jobs, b.jobs);
        let c = parse(b"job {\nname a\ncmd /bin/false\n}").unwrap();
        assert_ne!(a.jobs, c.jobs);
    }

    #[test]
    fn hostile_input_never_panics() {
        let inputs: Vec<Vec<u8>> = vec![
            vec![0xff; 1000],
            b"job { job { job {".to_vec(),
            b"}}}}{{{{".to_vec(),
            b"\"".to_vec(),
            b"ulimit { ulimit {".to_vec(),
            b"job {\nulimit {\n".to_vec(),
            b"job {\ndepends {\n".to_vec(),
            b"job {\nbounce\n}".to_vec(),
            "é\u{202e}\u{feff}".as_bytes().to_vec(),
            vec![b'a'; 10 << 20],
        ];
        for input in inputs {
            let sources = [Source::new("f", input.clone())];
            let _ = parse(&input).map_err(|errors| render_all(&errors, &sources, 100));
        }
    }

    #[test]
    fn instances_become_copies_with_their_number() {
        let text = "job {\n name web\n cmd /bin/web --port 80%i --literal %%i\n dir /srv/%i\n out /var/log/web.%i.log\n env A=1\n instances 3\n}\njob {\n name lb\n cmd /bin/lb\n after web\n}\n";
        let config = parse(text.as_bytes()).unwrap();
        let names: Vec<&str> = config.jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["web.1", "web.2", "web.3", "lb"]);
        assert_eq!(config.origins.len(), 4);
        let second = &config.jobs[1];
        assert_eq!(second.cmd, ["/bin/web", "--port", "802", "--literal", "%i"]);
        assert_eq!(second.dir.as_deref(), Some("/srv/2"));
        assert_eq!(second.stdout, Output::File("/var/log/web.2.log".into()));
        let env: Vec<String> = second
            .env
            .iter()
            .map(|e| format!("{}={}", e.name, e.value))
            .collect();
        assert_eq!(env, ["A=1", "PMTR_INSTANCE=2"]);
        assert_eq!(
            second
                .extras
                .instance
                .as_ref()
                .map(|i| (i.group.as_str(), i.index)),
            Some(("web", 2))
        );
        assert_eq!(second.instances, 0);
        assert_eq!(config.jobs[3].extras.after, ["web.1", "web.2", "web.3"]);
    }

    #[test]
    fn a_copy_is_the_same_whatever_the_number_of_copies() {
        let with = |n: u32| {
            parse(format!("job {{\n name w\n cmd /bin/w\n instances {n}\n}}").as_bytes()).unwrap()
        };
        assert_eq!(with(2).jobs[..], with(4).jobs[..2]);
    }

    #[test]
    fn instance_errors() {
        let job = |extra: &str| format!("job {{\n name web\n cmd /bin/web\n {extra}\n}}\n");
        assert!(errors(&job("instances 0"))[0]
            .2
            .contains("instances: 0 is out of range 1 to 10000"));
        assert!(errors(&job("instances 10001"))[0]
            .2
            .contains("out of range 1 to 10000"));
        assert!(errors(&job("instances x"))[0].2.contains("not an integer"));
        let clash = format!(
            "{}job {{\n name web.2\n cmd /bin/true\n}}\n",
            job("instances 2")
        );
        let found = errors(&clash);
        assert_eq!(
            (found[0].0, found[0].2.as_str()),
            (7, "duplicate job name `web.2` (first defined on line 1)")
        );
        let clash = format!(
            "job {{\n name web.2\n cmd /bin/true\n}}\n{}",
            job("instances 2")
        );
        assert!(errors(&clash)[0].2.contains("duplicate job name `web.2`"));
        let long = format!(
            "job {{\n name {}\n cmd /bin/true\n instances 10\n}}\n",
            "n".repeat(253)
        );
        assert!(errors(&long)[0].2.contains("is longer than 255 bytes"));
        assert!(errors(&job("instances 2\n after web"))[0]
            .2
            .contains("job `web` cannot come after itself"));
    }

    #[test]
    fn an_after_cycle_through_copies_is_found() {
        let text = "job {\n name a\n cmd /bin/a\n instances 2\n after b\n}\njob {\n name b\n cmd /bin/b\n after a\n}\n";
        let found = errors(text);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].2.starts_with("after: a cycle: "), "{found:?}");
    }

    #[test]
    fn a_hundred_thousand_jobs_parse() {
        let mut text = String::new();
        for i in 0..100_000 {
            text.push_str(&format!(
                "job {{\n  name job{i}\n  cmd /bin/sleep 1000\n}}\n"
            ));
        }
        let config = parse(text.as_bytes()).unwrap();
        assert_eq!(config.jobs.len(), 100_000);
    }
}
