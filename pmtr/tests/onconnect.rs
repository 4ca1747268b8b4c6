//! `onconnect`, run as a pmtr job: each TCP connection gets a fresh PROG
//! with the connection on descriptor 3 and no other stray descriptor.

use std::io::Read;
use std::net::TcpStream;

use crate::harness::{children_of, free_port, wait_until, Pmtr, Sandbox, ONCONNECT, SHORT};

fn exchange(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(SHORT)).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}

#[test]
fn each_connection_runs_the_program_with_the_connection_on_fd_3() {
    let sandbox = Sandbox::new();
    let port = free_port();
    // Lists the descriptors 3-9 the program has, on the connection.
    let program = "{ for fd in 3 4 5 6 7 8 9; do [ -e /proc/$$/fd/$fd ] && echo open $fd; done; echo hello $$; } >&3";
    let pmtr = Pmtr::start(
        &sandbox,
        &format!("job {{\n name lazy\n cmd {ONCONNECT} -a 127.0.0.1 -p {port} /bin/sh -c \"{program}\"\n}}\n"),
    );
    let listener = pmtr.expect_started("lazy", 1, SHORT);
    assert!(wait_until(SHORT, || TcpStream::connect((
        "127.0.0.1",
        port
    ))
    .is_ok()));
    // Nothing runs until a client connects (the probe above ran one).
    let first = exchange(port).expect("an answer");
    let second = exchange(port).expect("an answer");
    for answer in [&first, &second] {
        let lines: Vec<&str> = answer.lines().collect();
        assert_eq!(
            lines[..1],
            ["open 3"],
            "only fd 3 beyond 0-2, and it is the connection: {answer:?}"
        );
        assert!(lines[1].starts_with("hello "));
    }
    assert_ne!(first, second, "a fresh process per connection");
    assert!(
        wait_until(SHORT, || children_of(listener).is_empty()),
        "children reaped: {:?}",
        children_of(listener)
    );
}
