/* file_watch.h - reload when a file the configuration names changes
 * (watch_files)
 *
 * Kubernetes updates a mounted Secret by swapping a symbolic link; certbot
 * and the ACME hook rename new files into place. Either way the path then
 * names another file, or one of another size or time. Every watch_files
 * seconds the main process (the supervisor, or the one worker) looks at
 * the configuration file and every certificate, key and OCSP response it
 * names, and on a change raises SIGHUP on itself: the reload is the one a
 * SIGHUP does, refused and logged like it when the new files do not load.
 */
#ifndef STARTTLSD_FILE_WATCH_H
#define STARTTLSD_FILE_WATCH_H

#include <stdint.h>

#include "server.h"

/* file_watch_fingerprint - what the files of the generation in force look
 * like now: a hash of each one's device, inode, size and modification time */
uint64_t file_watch_fingerprint(const struct server *srv);

/* file_watch_check - look now; SIGHUP to this process when the files
 * changed since the generation in force was loaded or last looked at */
void file_watch_check(struct server *srv);

#endif
