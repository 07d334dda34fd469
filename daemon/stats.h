/*
 * The --stats JSON object (DESIGN.md; keys documented in optd(1)) and the
 * human summary on stderr.
 */
#pragma once

struct supervisor;

/* Writes the JSON file if asked for and prints the summary unless -q. */
void stats_finish(struct supervisor *sv, int optd_status);
