//! `users`, `tokens` and `audit`: team access from the command line. The
//! command line acts as the OS user running it (an admin: whoever can run
//! it can open the state database anyway); every change is in the audit
//! log as `os:<user>`.

use std::io::{BufRead, IsTerminal};

use clap::{Args, Subcommand};

use crate::campaign::{usage, Actor, CoreError, ExitCode, Role, Workspace};
use crate::cli::printer;

#[derive(Debug, Args)]
pub struct UsersArgs {
    #[command(subcommand)]
    pub command: UsersCommand,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a user who signs in to the console with a name and password.
    #[command(after_help = "\
Examples:
  zns-batch users add anh --role operator              # asks for the password twice
  printf '%s\\n' \"$PW\" | zns-batch users add ci --role viewer --password-stdin")]
    Add(UserAddArgs),
    /// List users and their roles (never a password).
    #[command(after_help = "Examples:\n  zns-batch users list\n  zns-batch users list --json")]
    List,
    /// Remove a user; their console sessions end at their next request.
    #[command(after_help = "Examples:\n  zns-batch users remove anh")]
    Remove(UserNameArgs),
    /// Set a new password; the user's console sessions end.
    #[command(after_help = "\
Examples:
  zns-batch users passwd anh
  printf '%s\\n' \"$PW\" | zns-batch users passwd anh --password-stdin")]
    Passwd(UserPasswdArgs),
    /// Give a user another role; their console sessions end.
    #[command(after_help = "Examples:\n  zns-batch users role anh --role viewer")]
    Role(UserRoleArgs),
}

#[derive(Debug, Args)]
pub struct UserRoleArgs {
    pub name: String,
    /// viewer, operator or admin.
    #[arg(long, value_name = "ROLE")]
    pub role: String,
}

#[derive(Debug, Args)]
pub struct UserAddArgs {
    pub name: String,
    /// viewer (read only), operator (upload, start, pause, rows in doubt) or admin (also users and tokens).
    #[arg(long, value_name = "ROLE")]
    pub role: String,
    /// Read the password from the first line of standard input (scripts).
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Args)]
pub struct UserNameArgs {
    pub name: String,
}

#[derive(Debug, Args)]
pub struct UserPasswdArgs {
    pub name: String,
    /// Read the password from the first line of standard input (scripts).
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Args)]
pub struct TokensArgs {
    #[command(subcommand)]
    pub command: TokensCommand,
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Make a named API token (`Authorization: Bearer TOKEN`); it is printed once, stored hashed.
    #[command(after_help = "\
Examples:
  zns-batch tokens add nightly --role operator > nightly.token
  curl -H \"Authorization: Bearer $(cat nightly.token)\" http://127.0.0.1:8080/api/v1/campaigns")]
    Add(TokenAddArgs),
    /// List tokens: name, role, revoked or not (never the token).
    #[command(after_help = "Examples:\n  zns-batch tokens list --json")]
    List,
    /// Revoke a token: it is refused (401) from its next request on.
    #[command(after_help = "Examples:\n  zns-batch tokens revoke nightly")]
    Revoke(TokenNameArgs),
}

#[derive(Debug, Args)]
pub struct TokenAddArgs {
    pub name: String,
    /// viewer, operator or admin.
    #[arg(long, value_name = "ROLE")]
    pub role: String,
}

#[derive(Debug, Args)]
pub struct TokenNameArgs {
    pub name: String,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only this campaign's entries.
    pub campaign: Option<String>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 50, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=crate::campaign::team::AUDIT_MAX_LIMIT))]
    pub limit: u64,
    /// Entries older than this id (page back from the last id shown).
    #[arg(long, value_name = "ID")]
    pub before: Option<i64>,
}

fn role(text: &str) -> Result<Role, CoreError> {
    text.parse()
}

/// A password from stdin's first line, or typed twice at the terminal.
fn read_password(from_stdin: bool) -> Result<String, CoreError> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| usage(format!("cannot read the password from stdin: {e}")))?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    if !std::io::stdin().is_terminal() {
        return Err(usage(
            "no terminal to ask for the password: add --password-stdin and pipe it in",
        ));
    }
    let first = rpassword::prompt_password("Password: ")
        .map_err(|e| usage(format!("cannot read the password: {e}")))?;
    let again = rpassword::prompt_password("Password again: ")
        .map_err(|e| usage(format!("cannot read the password: {e}")))?;
    if first != again {
        return Err(usage("the two passwords differ: nothing changed"));
    }
    Ok(first)
}

fn when(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

pub fn users_cmd(ws: &Workspace, json: bool, args: UsersArgs) -> Result<ExitCode, CoreError> {
    let me = Actor::os_user();
    match args.command {
        UsersCommand::Add(a) => {
            let r = role(&a.role)?;
            crate::campaign::team::check_member_name("user", &a.name)?;
            let pw = read_password(a.password_stdin)?;
            ws.add_user(&me, &a.name, r, &pw)?;
            eprintln!("user `{}` added as {r}", a.name);
        }
        UsersCommand::List => print_list(
            json,
            &ws.users()?,
            "No users: `zns-batch users add NAME --role operator` adds one.",
            &format!("{:<24} {:<9} created (UTC)", "name", "role"),
            |u| format!("{:<24} {:<9} {}", u.name, u.role, when(u.created_ms)),
        ),
        UsersCommand::Remove(a) => {
            ws.remove_user(&me, &a.name)?;
            eprintln!("user `{}` removed", a.name);
        }
        UsersCommand::Passwd(a) => {
            let pw = read_password(a.password_stdin)?;
            ws.set_password(&me, &a.name, &pw)?;
            eprintln!("new password for `{}`; their sessions have ended", a.name);
        }
        UsersCommand::Role(a) => {
            let r = role(&a.role)?;
            ws.set_role(&me, &a.name, r)?;
            eprintln!("`{}` is now {r}; their sessions have ended", a.name);
        }
    }
    Ok(ExitCode::Finished)
}

pub fn tokens_cmd(ws: &Workspace, json: bool, args: TokensArgs) -> Result<ExitCode, CoreError> {
    let me = Actor::os_user();
    match args.command {
        TokensCommand::Add(a) => {
            let r = role(&a.role)?;
            let token = ws.add_token(&me, &a.name, r)?;
            if json {
                printer::print_json(
                    &serde_json::json!({"name": a.name, "role": r, "token": token}),
                );
            } else {
                // Only the token on stdout, so `> file` keeps just it.
                println!("{token}");
            }
            eprintln!(
                "token `{}` ({r}): shown this once and stored only as a hash; keep it now",
                a.name
            );
        }
        TokensCommand::List => print_list(
            json,
            &ws.tokens()?,
            "No API tokens: `zns-batch tokens add NAME --role operator` makes one.",
            &format!("{:<24} {:<9} {:<8} created (UTC)", "name", "role", "state"),
            |t| {
                let state = if t.revoked { "revoked" } else { "live" };
                format!(
                    "{:<24} {:<9} {:<8} {}",
                    t.name,
                    t.role,
                    state,
                    when(t.created_ms)
                )
            },
        ),
        TokensCommand::Revoke(a) => {
            ws.revoke_token(&me, &a.name)?;
            eprintln!("token `{}` revoked", a.name);
        }
    }
    Ok(ExitCode::Finished)
}

/// A `list`: JSON, else `none` when it is empty, else a table.
fn print_list<T: serde::Serialize>(
    json: bool,
    list: &[T],
    none: &str,
    header: &str,
    line: impl Fn(&T) -> String,
) {
    if json {
        printer::print_json(&list);
    } else if list.is_empty() {
        println!("{none}");
    } else {
        println!("{header}");
        for item in list {
            println!("{}", line(item));
        }
    }
}

pub fn audit_cmd(ws: &Workspace, json: bool, args: AuditArgs) -> Result<ExitCode, CoreError> {
    let list = ws.audit_list(args.campaign.as_deref(), args.before, args.limit)?;
    if json {
        printer::print_json(&list);
        return Ok(ExitCode::Finished);
    }
    if list.is_empty() {
        println!("Nothing in the audit log yet.");
        return Ok(ExitCode::Finished);
    }
    println!(
        "{:>6}  {:<20}  {:<20} {:<12} {:<16} {:<8} detail",
        "id", "at (UTC)", "who", "action", "campaign", "outcome"
    );
    for e in &list {
        let at = e.at.get(..19).unwrap_or(&e.at);
        println!(
            "{:>6}  {:<20}  {:<20} {:<12} {:<16} {:<8} {}",
            e.id,
            at,
            e.actor,
            e.action,
            e.campaign.as_deref().unwrap_or("-"),
            e.outcome,
            e.detail
        );
    }
    if let Some(last) = list.last() {
        if list.len() as u64 == args.limit {
            println!("older: --before {}", last.id);
        }
    }
    Ok(ExitCode::Finished)
}
