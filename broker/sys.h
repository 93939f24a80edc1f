/*
 * sys.h -- the $SYS topics, Mosquitto's names and meanings (docs/sys.md
 * lists them), published retained every sys_interval; and `log_dest topic`
 * (log lines published on $SYS/broker/log/LEVEL).
 */
#ifndef SECBROKER_SYS_H
#define SECBROKER_SYS_H

#include <stdint.h>

struct broker;

/* Start the clock of uptime and the load averages. */
void sys_init(struct broker *b);
/* Publish every $SYS topic now (call every sys_interval seconds). */
void sys_publish(struct broker *b);
/* Queue log lines for `log_dest topic` from now on. */
void sys_log_topic_enable(void);
/* Publish the log lines queued for `log_dest topic` (call each iteration). */
void sys_publish_log(struct broker *b);
/* Stop queueing log lines and free the queued ones (shutdown). */
void sys_free(void);
/* Number of $SYS topics sys_publish writes (for tests and docs). */
uint32_t sys_topic_count(void);

#endif
