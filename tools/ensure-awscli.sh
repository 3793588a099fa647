#!/usr/bin/env bash
# Make the aws cli v2 available for the end-to-end tests: Debian's awscli package is v2.
# A pip-installed v1 earlier on PATH does not count; the tests call /usr/bin/aws.
set -euo pipefail
if /usr/bin/aws --version 2>/dev/null | grep -q '^aws-cli/2'; then
    exit 0
fi
if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null; then
    echo "ensure-awscli: /usr/bin/aws (v2) is missing and we are not root; install Debian's awscli package" >&2
    exit 1
fi
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq awscli >/dev/null
/usr/bin/aws --version
