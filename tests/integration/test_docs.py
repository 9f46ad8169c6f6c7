"""Every configuration key is documented where an admin looks for it: the
README's key tables, starttlsd.conf(5) and the example conf/starttlsd.conf
(the project's rule: document every key in the README and the man pages).
The keys are read from the parser's own table, so a new key without its
documentation fails here."""

import re

from conftest import REPO

CONFIG_C = (REPO / "proxy" / "core" / "config.c").read_text()
KEYS = re.findall(r'^\s*\{ "([a-z_]+)", SCOPE_(?:GLOBAL|LISTENER), ', CONFIG_C, re.M)


def test_the_key_table_is_found():
    assert len(KEYS) > 30 and "backend" in KEYS and "listen" in KEYS, KEYS


def test_every_key_is_in_the_readme_tables():
    readme = (REPO / "README.md").read_text()
    missing = [k for k in KEYS if "| `%s` |" % k not in readme]
    assert not missing, "keys without a row in README.md's key tables: %s" % missing


def test_every_key_is_in_the_man_page():
    man = (REPO / "packaging" / "man" / "starttlsd.conf.5").read_text()
    missing = [k for k in KEYS if not re.search(r"^\.B[IR]? %s\b" % k, man, re.M)]
    assert not missing, "keys without an entry in starttlsd.conf(5): %s" % missing


def test_every_key_is_in_the_example_configuration():
    conf = (REPO / "conf" / "starttlsd.conf").read_text()
    missing = [k for k in KEYS if not re.search(r"^#?%s\s*=" % k, conf, re.M)]
    assert not missing, "keys not shown in conf/starttlsd.conf: %s" % missing
