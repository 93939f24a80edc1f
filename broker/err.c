/* err.c -- names of the broker's error codes (see err.h). */
#include "broker/err.h"

const char *bk_strerror(int err)
{
    switch (err) {
    case BK_OK:
        return "ok";
    case BK_ERR_NOMEM:
        return "out of memory";
    case BK_ERR_FULL:
        return "limit reached";
    case BK_ERR_CLOSED:
        return "connection closed";
    case BK_ERR_UNKNOWN:
        return "unknown id";
    case BK_ERR_STATE:
        return "invalid in this state";
    case BK_ERR_ENCODE:
        return "cannot encode packet";
    case BK_ERR_IO:
        return "I/O error";
    case BK_ERR_CONFIG:
        return "configuration error";
    }
    return "unknown error";
}
