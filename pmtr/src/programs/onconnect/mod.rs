//! `onconnect [-a ADDR] -p PORT PROG [ARGS]`: listens on a TCP port and,
//! for each accepted connection, runs PROG with the connection on
//! descriptor 3 (and no other descriptor but 0, 1 and 2), so that a
//! service starts only when a client connects. Run it as a pmtr job.

pub mod cli;

use std::ffi::CString;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::process::ExitCode;

use crate::sys::signals::reap_children_automatically;
use crate::sys::spawn::spawn_with_connection;
use cli::Args;
use pmtr_common::reason::{Reason, Text};

/// Serves connections until the listener fails; the exit code says how
/// it ended.
pub fn run(args: &Args) -> ExitCode {
    let strings: Result<Vec<CString>, _> = args
        .command
        .iter()
        .map(|a| CString::new(a.as_str()))
        .collect();
    let Ok(strings) = strings else {
        eprintln!("onconnect: an argument holds a NUL byte");
        return ExitCode::from(2);
    };
    let mut argv: Vec<*const libc::c_char> = strings.iter().map(|s| s.as_ptr()).collect();
    argv.push(std::ptr::null());
    let listener = match TcpListener::bind((args.address.as_str(), args.port)) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!(
                "onconnect: unable to listen on {}:{}: {}",
                args.address,
                args.port,
                Reason(&error)
            );
            return ExitCode::FAILURE;
        }
    };
    // Children are reaped by the kernel: no zombies, no SIGCHLD handling.
    if let Err(errno) = reap_children_automatically() {
        eprintln!("onconnect: unable to set SA_NOCLDWAIT: {}", Text(errno));
        return ExitCode::FAILURE;
    }
    for connection in listener.incoming() {
        match connection {
            Ok(stream) => {
                if let Err(errno) = spawn_with_connection(&argv, stream.as_raw_fd()) {
                    eprintln!(
                        "onconnect: unable to run {}: {}",
                        args.command[0],
                        Text(errno)
                    );
                }
                // The child has its copy; this one closes here.
            }
            Err(error) => eprintln!("onconnect: accept: {}", Reason(&error)),
        }
    }
    ExitCode::SUCCESS
}
