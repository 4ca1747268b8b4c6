//! The command line of `onconnect`, defined once for the parser, `--help`
//! and the man page.

use clap::Parser;

/// onconnect: runs PROG for each TCP connection, with the connection on
/// descriptor 3.
#[derive(Debug, Parser)]
#[command(name = "onconnect", version, about, long_about = None)]
pub struct Args {
    /// Address to listen on
    #[arg(
        short = 'a',
        long = "address",
        value_name = "ADDR",
        default_value = "0.0.0.0"
    )]
    pub address: String,
    /// TCP port to listen on
    #[arg(short = 'p', long = "port", value_name = "PORT")]
    pub port: u16,
    /// Program to run (absolute path), then its arguments
    #[arg(required = true, trailing_var_arg = true, value_name = "PROG [ARGS]")]
    pub command: Vec<String>,
}
