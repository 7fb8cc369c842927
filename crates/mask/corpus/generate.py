#!/usr/bin/env python3
"""Regenerates the generated half of the masking corpus (deterministic seed).

    python3 crates/mask/corpus/generate.py

Writes positives.jsonl and generated_negatives.jsonl. hand_negatives.jsonl and
hand_positives.jsonl are written by hand and never touched by this script.
Each line: {"text": ..., "expect": [[kind, exact substring], ...]}.
"""
import base64, json, os, random, string

R = random.Random(9)
HERE = os.path.dirname(os.path.abspath(__file__))


def luhn_digit(body):
    s = 0
    for i, c in enumerate(reversed(body + "0")):
        d = int(c)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        s += d
    return str((10 - s % 10) % 10)


def luhn_ok(n):
    return luhn_digit(n[:-1]) == n[-1]


def any_luhn_subchain(g):
    # A grouped number holds a card if any run of whole groups does.
    gs = g.replace("-", " ").split(" ")
    for i in range(len(gs)):
        for j in range(i, len(gs)):
            d = "".join(gs[i:j + 1])
            if 13 <= len(d) <= 19 and luhn_ok(d):
                return True
    return False


def digits(k):
    return "".join(R.choice(string.digits) for _ in range(k))


PREFIXES = [("4", 16), ("4", 13), ("4", 19), ("51", 16), ("55", 16), ("2221", 16), ("2720", 16),
            ("34", 15), ("37", 15), ("6011", 16), ("65", 16), ("62", 17), ("3530", 16),
            ("36", 14), ("300", 14), ("50", 18), ("6759", 19), ("2200", 16), ("81", 16), ("9792", 16)]


def card():
    p, n = R.choice(PREFIXES)
    body = p + digits(n - len(p) - 1)
    return body + luhn_digit(body)


def group(c):
    n = len(c)
    sep = R.choice([" ", "-", ""])
    if not sep:
        return c
    if n == 15:
        parts = [c[:4], c[4:10], c[10:]]
    elif n == 14:
        parts = [c[:4], c[4:10], c[10:]]
    else:
        parts = [c[i:i + 4] for i in range(0, n, 4)]
    return sep.join(parts)


def ssn():
    while True:
        a, g, s = R.randint(1, 899), R.randint(1, 99), R.randint(1, 9999)
        if a != 666:
            return "%03d%s%02d%s%04d" % (a, "-", g, "-", s) if R.random() < 0.85 else "%03d %02d %04d" % (a, g, s)


IBAN_SHAPES = {"DE": "n18", "GB": "a4n14", "FR": "n10c11n2", "NL": "a4n10", "ES": "n20", "IT": "a1n10c12",
               "CH": "n5c12", "BE": "n12", "PL": "n24", "SE": "n20", "NO": "n11", "AT": "n16"}


def bban(shape):
    out, i = "", 0
    while i < len(shape):
        t = shape[i]
        j = i + 1
        while j < len(shape) and shape[j].isdigit():
            j += 1
        k = int(shape[i + 1:j])
        pool = {"n": string.digits, "a": string.ascii_uppercase, "c": string.ascii_uppercase + string.digits}[t]
        out += "".join(R.choice(pool) for _ in range(k))
        i = j
    return out


def iban_check(cc, b):
    s = "".join(str(int(ch, 36)) for ch in b + cc + "00")
    return "%02d" % (98 - int(s) % 97)


def iban():
    cc = R.choice(sorted(IBAN_SHAPES))
    b = bban(IBAN_SHAPES[cc])
    v = cc + iban_check(cc, b) + b
    if R.random() < 0.5:
        v = " ".join(v[i:i + 4] for i in range(0, len(v), 4))
    return v


NAMES = ["jane", "john.doe", "a.b-c", "ops+alerts", "x_y", "maria.garcia", "li.wei", "o'neil".replace("'", ""), "dev99"]
DOMS = ["example.com", "mail.example.org", "corp.example.co.uk", "example.io", "sub-d.example.net", "xn--bcher-kva.example"]


def email():
    return R.choice(NAMES) + str(R.randint(0, 999) if R.random() < 0.3 else "") + "@" + R.choice(DOMS)


def phone():
    t = R.randint(0, 6)
    a, e, l = R.randint(200, 999), R.randint(200, 999), R.randint(0, 9999)
    if t == 0:
        return "+1 %d %d %04d" % (a, e, l)
    if t == 1:
        return "(%d) %d-%04d" % (a, e, l)
    if t == 2:
        return "%d-%d-%04d" % (a, e, l)
    if t == 3:
        return "%d.%d.%04d" % (a, e, l)
    if t == 4:
        return "+44 20 %04d %04d" % (R.randint(1000, 9999), l)
    if t == 5:
        return "+%d%s" % (R.choice([33, 49, 81, 91, 61]), digits(R.randint(8, 10)))
    return "0%d %s %s" % (R.randint(1, 9), digits(4), digits(4))


def ipv4():
    return ".".join(str(R.choice([R.randint(0, 255), R.randint(1, 9), 10, 192, 172])) for _ in range(4))


def ipv6():
    groups = ["%x" % R.randint(0, 0xffff) for _ in range(8)]
    t = R.randint(0, 3)
    if t == 0:
        return ":".join(groups)
    if t == 1:
        return "2001:db8::" + ":".join(groups[:R.randint(1, 3)])
    if t == 2:
        return "fe80::" + ":".join(groups[:4])
    return "::ffff:" + ipv4()


ALNUM = string.ascii_letters + string.digits


def mixed(k, pool=ALNUM):
    while True:
        s = "".join(R.choice(pool) for _ in range(k))
        if any(c.isdigit() for c in s) and any(c.isupper() for c in s) and any(c.islower() for c in s):
            return s


def b64u(d):
    return base64.urlsafe_b64encode(d).rstrip(b"=").decode()


SECRETS = {
    "aws_key": lambda: R.choice(["AKIA", "ASIA", "AROA"]) + "".join(R.choice(string.ascii_uppercase + "234567") for _ in range(16)),
    "github_token": lambda: R.choice(["ghp_", "gho_", "ghs_"]) + mixed(36) if R.random() < 0.8 else "github_pat_" + mixed(22) + "_" + mixed(59),
    "stripe_key": lambda: R.choice(["sk_live_", "rk_live_"]) + mixed(R.choice([24, 34, 99])),
    "openai_key": lambda: R.choice(["sk-proj-", "sk-", "sk-svcacct-"]) + mixed(R.choice([32, 48, 64]), ALNUM + "_-"),
    "anthropic_key": lambda: "sk-ant-api03-" + mixed(R.choice([40, 95]), ALNUM + "_-"),
    "jwt": lambda: ".".join([b64u(json.dumps({"alg": R.choice(["HS256", "RS256", "EdDSA"]), "typ": "JWT"}).encode()),
                             b64u(json.dumps({"sub": digits(6), "exp": R.randint(1700000000, 1800000000)}).encode()),
                             b64u(bytes(R.randrange(256) for _ in range(32)))]),
    "private_key": lambda: "-----BEGIN %sPRIVATE KEY-----\n%s\n-----END %sPRIVATE KEY-----" % (
        (k := R.choice(["", "RSA ", "EC ", "OPENSSH ", "ENCRYPTED "])),
        "\n".join(base64.b64encode(bytes(R.randrange(256) for _ in range(48))).decode() for _ in range(R.randint(2, 5))), k),
}

GEN = {"card": lambda: group(card()), "ssn": ssn, "iban": iban, "email": email, "phone": phone, "ipv4": ipv4, "ipv6": ipv6, **SECRETS}

TEMPLATES = [
    "{v}",
    "value: {v}",
    "Customer says: please use {v} for this.",
    '{{"field": "{v}", "id": 42}}',
    "2024-03-01T12:00:00Z INFO user updated record with {v} (request 8f3a)",
    "id,{v},active",
    "<td>{v}</td>",
    "note={v}; retry=3",
    "First line\n{v}\nlast line",
    "'{v}'",
]


def positives():
    out = []
    for kind, g in GEN.items():
        n = 120 if kind in SECRETS else 250
        for _ in range(n):
            v = g()
            t = R.choice(TEMPLATES)
            if kind == "private_key" and t.startswith('{"'):
                t = "{v}"
            out.append({"text": t.format(v=v), "expect": [[kind, v]]})
    # Card numbers as the whole value of an integer column's text form.
    for _ in range(100):
        c = card()
        out.append({"text": c, "expect": [["card", c]]})
    # Several kinds in one text.
    for _ in range(100):
        a, b, c = group(card()), email(), ipv4()
        out.append({"text": "paid with %s by %s from %s" % (a, b, c), "expect": [["card", a], ["email", b], ["ipv4", c]]})
    return out


def negatives():
    out = []
    add = lambda t: out.append({"text": t, "expect": []})
    for _ in range(300):
        # 16-digit numbers that fail Luhn.
        while True:
            c = card()
            bad = c[:-1] + str((int(c[-1]) + R.randint(1, 9)) % 10)
            g = group(bad)
            if not any_luhn_subchain(g):
                break
        add("ref %s" % g)
    for _ in range(300):
        # Luhn-valid numbers by chance with non-card prefixes: epoch
        # timestamps (ms/us/ns), zero-padded ids, 7/9-prefixed tracking ids.
        p = R.choice(["17", "16", "0000", "00", "7", "99"])
        n = R.choice([13, 16, 19])
        body = p + digits(n - len(p) - 1)
        add("ts=%s" % (body + luhn_digit(body)))
    for _ in range(200):
        # Luhn-valid card-shaped numbers glued to identifiers.
        c = card()
        add(R.choice(["ORD-%s", "order_%s", "INV%s", "v%s", "3.%s", "%sX", "txn-%s-01", "/sku-%s"]) % c)
    for _ in range(200):
        add("%04d-%02d-%02dT%02d:%02d:%02d.%03dZ job %s done" % (R.randint(1990, 2030), R.randint(1, 12), R.randint(1, 28),
                                                              R.randint(0, 23), R.randint(0, 59), R.randint(0, 59), R.randint(0, 999), digits(6)))
    for _ in range(200):
        u = "%08x-%04x-%04x-%04x-%012x" % tuple(R.getrandbits(b) for b in (32, 16, 16, 16, 48))
        add("request_id=%s" % u)
        add("commit %s" % "".join(R.choice("0123456789abcdef") for _ in range(40)))
    for _ in range(200):
        a = R.choice([0, 666, R.randint(900, 999)])
        add("%03d-%02d-%04d" % (a, R.randint(1, 99), R.randint(1, 9999)))
        add("%03d-00-%04d" % (R.randint(1, 665), R.randint(1, 9999)))
        add("account %s" % digits(9))
    for _ in range(150):
        v = iban().replace(" ", "")
        bad = v[:2] + "%02d" % ((int(v[2:4]) + R.randint(1, 50)) % 97 + 2) + v[4:]
        if bad != v:
            add("IBAN %s" % bad)
    for _ in range(150):
        add("%s@%s" % (R.choice(["lodash", "react", "pkg"]), "%d.%d.%d" % (R.randint(0, 20), R.randint(0, 40), R.randint(0, 99))))
        add("@%s mentioned you" % R.choice(NAMES).replace(".", ""))
        add("img/icon@%dx.png" % R.randint(2, 3))
    for _ in range(200):
        add("order #%s shipped" % digits(R.randint(6, 12)))
        add("took %d.%03d s, %d rows, %d bytes" % (R.randint(0, 99), R.randint(0, 999), R.randint(0, 10 ** 6), R.randint(0, 10 ** 9)))
        add("version %d.%d.%d build %s" % (R.randint(0, 20), R.randint(0, 40), R.randint(0, 99), digits(5)))
    for _ in range(150):
        add("%d.%d.%d.%d" % (R.randint(256, 999), R.randint(0, 255), R.randint(0, 255), R.randint(0, 255)))
        add("oid 1.3.6.1.4.1.%d.%d" % (R.randint(1, 60000), R.randint(1, 99)))
        add("at %02d:%02d:%02d" % (R.randint(0, 23), R.randint(0, 59), R.randint(0, 59)))
        add("mac %s" % ":".join("%02x" % R.randrange(256) for _ in range(6)))
    for _ in range(100):
        add("sk-%s" % "-".join(R.choice(["learn", "image", "compat", "shim", "layer", "utils"]) for _ in range(4)))
        add("task-%s" % mixed(24))
        add("eyJ%s" % mixed(30))
        add("AKIA%s" % digits(8))
    return out


def write(name, rows):
    with open(os.path.join(HERE, name), "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


write("positives.jsonl", positives())
write("generated_negatives.jsonl", negatives())
