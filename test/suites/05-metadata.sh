#!/usr/bin/env bash
# Release metadata: META.json is valid PGXN metadata for the version in
# idempotency.control, LICENSE is the PostgreSQL Licence, CHANGELOG.md has a
# section for the version.
. "$IDEM_ROOT/test/lib/common.sh"
cd "$IDEM_ROOT" || exit 1
rc=0
fail() { idem_fail "$1"; rc=1; }

control_version=$(sed -n "s/^default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" idempotency.control)

if meta=$(python3 - <<'PY' 2>&1
import json
m = json.load(open("META.json"))
for k in ("name", "abstract", "version", "maintainer", "license", "provides", "meta-spec"):
    assert k in m, "missing key %s" % k
assert m["meta-spec"]["version"] == "1.0.0", "meta-spec version"
assert m["license"] == "postgresql", "license"
p = m["provides"]["idempotency"]
assert p["file"] == "sql/idempotency.sql" and p["version"] == m["version"], "provides"
print(m["version"])
PY
); then
	idem_pass metadata/meta-json-valid
else
	fail metadata/meta-json-valid
	echo "$meta"
	meta=
fi

if [ -n "$meta" ] && [ "$meta" = "$control_version" ]; then
	idem_pass metadata/meta-json-version
else
	fail metadata/meta-json-version
	echo "        META.json version '$meta' differs from idempotency.control default_version '$control_version'"
fi

if grep -q '^PostgreSQL License' LICENSE && grep -q 'Permission to use, copy, modify, and distribute' LICENSE; then
	idem_pass metadata/license
else
	fail metadata/license
fi

if grep -qE "^## \[$control_version\] - [0-9]{4}-[0-9]{2}-[0-9]{2}|^## \[$control_version\] - unreleased" CHANGELOG.md; then
	idem_pass metadata/changelog-section
else
	fail metadata/changelog-section
	echo "        CHANGELOG.md has no '## [$control_version] - <date>' section"
fi
exit $rc
