/* version.h - starttlsd's own version (starttlsd -V, the metrics) */
#ifndef STARTTLSD_VERSION_H
#define STARTTLSD_VERSION_H

#define STARTTLSD_VERSION "0.1.0"

#endif
