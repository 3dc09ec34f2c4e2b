/* The page GET / answers (web/index.html), embedded in tracevaultd at build time: CMake
 * turns the file into a C array (cmake/embed.cmake -> BUILD/gen/web_index.c), so nothing is
 * read from disk at run time and no path from the network ever names a file. */
#ifndef TV_SERVER_WEB_PAGE_H
#define TV_SERVER_WEB_PAGE_H

#include <stddef.h>

extern const unsigned char tv_web_index_html[];
extern const size_t tv_web_index_html_len;

#endif
