# package.mk - the Debian package and the container image; included by the
# top Makefile
#
#   make deb             build/deb/starttlsd_VERSION_ARCH.deb (lintian clean)
#   make container       the image localhost/starttlsd:VERSION (podman)
#   make package-check   build both and test them: the .deb installed, run and
#                        purged in a fresh Debian 12 root, the image run in front
#                        of a recording sink, the units under a real systemd in
#                        a container, the Kubernetes sidecar pod played
#                        with podman kube play (tests/package/run)

.PHONY: deb container package-check deps-package

deps-package:
	packaging/install-deps package

deb: deps-package
	packaging/build-deb $(abspath $(BUILD))/deb

container: deps-package
	packaging/container/build

package-check: deps-package
	tests/package/run
