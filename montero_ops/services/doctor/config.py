"""Check 8: the .env file (present, mode 0600, required variables, key strength, mode, mail)."""

from __future__ import annotations

import re
import secrets
import stat
from pathlib import Path

from montero_ops.project import Project
from montero_ops.services.doctor.context import Context, parse_env_file
from montero_ops.services.doctor.finding import Finding, Repair, failed, passed, skipped, warned
from montero_ops.services.envfile import REQUIRED, secret_key_problem, template_problems

KEYGEN = 'python -c "import secrets; print(secrets.token_hex(32))"'
TRUE = {"1", "true", "yes", "on"}


def create_env(project: Project) -> str:
    from montero_ops.services.envfile import init

    if project.env_file.exists():
        return f"{project.env_file} already exists: left as it is"
    path = init(project)
    return f"created {path} with a fresh SECRET_KEY (mode 0600)"


def chmod_600(path: Path) -> str:
    path.chmod(0o600)
    return f"chmod 600 {path}"


def replace_key(env_file: Path) -> str:
    text = env_file.read_text()
    key = secrets.token_hex(32)
    if re.search(r"^SECRET_KEY=.*$", text, flags=re.MULTILINE):
        text = re.sub(r"^SECRET_KEY=.*$", f"SECRET_KEY={key}", text, flags=re.MULTILINE)
    else:
        text += ("" if text.endswith("\n") else "\n") + f"SECRET_KEY={key}\n"
    env_file.write_text(text)
    return f"wrote a fresh SECRET_KEY to {env_file} (restart the app: montero restart app)"


def check_config(ctx: Context) -> list[Finding]:
    env_file, example = ctx.project.env_file, ctx.project.env_example
    if not env_file.is_file():
        repair = Repair(
            f"create {env_file.name} from {example.name} with a fresh key", lambda: create_env(ctx.project), safe=True
        )
        findings = [failed("config.env_file", f"{env_file} is missing", "montero env init", repair=repair)]
        return findings + [
            skipped(i, f"no {env_file.name}")
            for i in ("config.env_mode", "config.required", "config.secret_key", "config.flask_env", "config.mail")
        ]
    findings = [passed("config.env_file", f"{env_file} present")]
    mode = stat.S_IMODE(env_file.stat().st_mode)
    if mode & 0o077:
        findings.append(
            warned(
                "config.env_mode",
                f"{env_file.name} is mode {mode:04o}: other users can read the secrets",
                f"chmod 600 {env_file}",
                repair=Repair(f"chmod 600 {env_file}", lambda: chmod_600(env_file), safe=True),
            )
        )
    else:
        findings.append(passed("config.env_mode", f"{env_file.name} is mode {mode:04o}"))
    env = ctx.env_file_values
    example_env = parse_env_file(example) if example.is_file() else {}
    missing = [n for n in REQUIRED if not env.get(n)]
    absent = [n for n in example_env if n not in env and not n.startswith("MAIL_")]
    if missing:
        findings.append(
            failed(
                "config.required",
                f"required variables not set: {', '.join(missing)}",
                f"montero env check  # then set {missing[0]} in {env_file}",
            )
        )
    elif unreadable := template_problems(env_file.read_text(errors="replace")):
        # Compose refuses the whole file (and quotes the value in its error): no command can start the stack.
        findings.append(
            failed(
                "config.required",
                f"compose cannot read the value of {', '.join(unreadable)}: an unclosed or malformed '${{'",
                f"write $$ for a literal $, or single-quote the value in {env_file}",
            )
        )
    elif duplicated := _duplicates(env_file):
        findings.append(
            warned(
                "config.required",
                f"set more than once in {env_file.name} (the last wins): {', '.join(duplicated)}",
                f"keep one line for each in {env_file}",
            )
        )
    else:
        # Variables of the example left out are not a problem: compose.yml gives each a default.
        note = f" ({len(absent)} optional variable(s) of {example.name} unset: defaults apply)" if absent else ""
        findings.append(passed("config.required", f"required variables set{note}"))
    findings.append(_secret_key(ctx.project, env.get("SECRET_KEY", ""), example_env.get("SECRET_KEY", ""), env_file))
    findings.append(_flask_env(env, ctx.production))
    findings.append(_mail(env))
    return findings


def _duplicates(env_file: Path) -> list[str]:
    seen: dict[str, int] = {}
    for line in env_file.read_text(errors="replace").splitlines():
        m = re.match(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=", line)
        if m:
            seen[m.group(1)] = seen.get(m.group(1), 0) + 1
    return sorted(name for name, count in seen.items() if count > 1)


def _secret_key(project: Project, key: str, example_key: str, env_file: Path) -> Finding:
    """The app's own rule (backend settings.secret_key_problem), plus: not the example's value."""
    fix = f"{KEYGEN}  # and put it as SECRET_KEY= in {env_file.name}"
    repair = Repair("write a fresh SECRET_KEY to .env (signs out every session)", lambda: replace_key(env_file))
    problem = secret_key_problem(project, key)
    if problem is None and key == example_key:
        problem = "SECRET_KEY is the value of .env.example, not a generated key"
    if problem:
        return failed("config.secret_key", problem, fix, repair=repair)
    return passed("config.secret_key", f"SECRET_KEY set ({len(key)} characters)")


def _flask_env(env: dict[str, str], production: bool) -> Finding:
    flask_env = env.get("FLASK_ENV", "production") or "production"
    debug = env.get("FLASK_DEBUG", "").lower() in TRUE or env.get("DEBUG", "").lower() in TRUE
    make = failed if production else warned
    if flask_env != "production":
        return make(
            "config.flask_env",
            f"FLASK_ENV={flask_env} (not production)",
            "set FLASK_ENV=production in .env, then montero restart app",
        )
    if debug:
        return make(
            "config.flask_env", "debug mode is on (FLASK_DEBUG)", "set FLASK_DEBUG=0 in .env, then montero restart app"
        )
    return passed("config.flask_env", "FLASK_ENV=production, debug off")


def _mail(env: dict[str, str]) -> Finding:
    if not env.get("MAIL_USERNAME"):
        return passed("config.mail", "mail not configured (MAIL_USERNAME empty): password-reset mails are not sent")
    missing = [n for n in ("MAIL_SERVER", "MAIL_PASSWORD", "MAIL_DEFAULT_SENDER") if n in env and not env[n]]
    missing += [n for n in ("MAIL_PASSWORD", "MAIL_DEFAULT_SENDER") if n not in env]
    if missing:
        return warned(
            "config.mail",
            f"MAIL_USERNAME is set but {', '.join(sorted(set(missing)))} not",
            f"set {' and '.join(sorted(set(missing)))} in .env",
        )
    return passed("config.mail", "mail settings complete")
