#!/usr/bin/env bash
# Install the Debian packages the project needs (DICOM validators and tools), only if missing.
# Needs root (CI and the development machines run as root); elsewhere it prints what to install.
set -euo pipefail

need=()
command -v dciodvfy >/dev/null 2>&1 || need+=(dicom3tools)
command -v dcmdump >/dev/null 2>&1 || need+=(dcmtk)
command -v pdftoppm >/dev/null 2>&1 || need+=(poppler-utils)
[ -e /usr/share/java/pixelmed.jar ] || need+=(pixelmed-apps)   # DicomSRValidator (TID 1500 checks)
command -v Orthanc >/dev/null 2>&1 || need+=(orthanc)           # the DICOM node of `nstage route` and its tests
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || need+=(orthanc-dicomweb)   # DICOMweb for the MONAI Label app's tests
command -v chromium >/dev/null 2>&1 || need+=(chromium)         # OHIF (shipped by monailabel) in a real browser: tests/label, make review
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)   # selenium's driver of that chromium (no browser download)
command -v elastix >/dev/null 2>&1 || need+=(elastix)           # Elastix's programs: registration without loading ITK (config/registration.json elastix_runner)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "error: missing system packages: ${need[*]} (install them with apt-get as root)" >&2
    exit 1
  fi
else
  SUDO=
fi
echo "installing system packages: ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
