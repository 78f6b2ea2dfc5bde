#!/usr/bin/env bash
# Installs the Debian packages cvm needs on a fresh Debian/Ubuntu host. Idempotent: a package that
# is already installed is left alone, and apt is only consulted when something is missing.
#
#   scripts/setup.sh            what `cvm compare` needs (QEMU, a guest kernel, busybox, runc, crun)
#                               and what building cvm needs
#   scripts/setup.sh --kernel   also what `cvm kernel build` needs (Debian's kernel source and
#                               the kernel's build tools), for cvm's minimal guest kernel
#   scripts/setup.sh --apps     also the app scenarios' programs (redis, postgres, nginx, fio,
#                               sysbench), whose installed files go into the image
#   scripts/setup.sh --test     also what the test suite needs (a real browser for the report test,
#                               Ansible and sshd for the fleet test, and the kernel build: CI
#                               boots the VM tests with both kernels)
set -euo pipefail

# The package lists live in scripts/packages/, one package a line: the Ansible role that prepares
# the hosts of a fleet (deploy/ansible) reads compare.txt too, so the two never drift apart.
lists=(compare build)
for arg in "$@"; do
  case "$arg" in
    --test) lists+=(test kernel) ;;
    --kernel) lists+=(kernel) ;;
    --apps) lists+=(apps) ;;
    *) echo "scripts/setup.sh: unknown option $arg (--kernel, --apps, --test)" >&2; exit 2 ;;
  esac
done
want=()
for list in "${lists[@]}"; do
  # Strip comments and blank lines; the first word of what is left is the package.
  while read -r p _; do
    want+=("$p")
  done < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$(dirname "$0")/packages/$list.txt")
done

if [[ $(id -u) -ne 0 ]]; then
  echo "scripts/setup.sh: run as root (it installs Debian packages with apt-get)" >&2
  exit 2
fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "scripts/setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # --no-install-recommends keeps out daemons (e.g. a default dockerd) that would rewrite the
  # host's network.
  # docker.io's maintainer scripts would start a default dockerd, which rewrites the host's
  # firewall and adds a bridge, and openssh-server's a host-wide sshd (the fleet test starts its
  # own, one per network namespace): forbid service starts during the install (policy-rc.d, exit
  # 101).
  # The guard is removed by a trap, so a failed apt-get (set -e) cannot leave it behind to block
  # every later service start on the host.
  # CVM_POLICY_RC_D moves the guard (tests point it into a temporary directory).
  guard_path=${CVM_POLICY_RC_D:-/usr/sbin/policy-rc.d}
  if [[ ! -e "$guard_path" ]]; then
    guard=$guard_path
    trap 'rm -f "$guard"' EXIT
    printf '#!/bin/sh\nexit 101\n' >"$guard" && chmod +x "$guard"
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Rust: the toolchain is expected to be present (rustup); say so plainly if it is not.
if ! command -v cargo >/dev/null; then
  echo "scripts/setup.sh: cargo not found; install Rust with rustup (https://rustup.rs)" >&2
  exit 2
fi
