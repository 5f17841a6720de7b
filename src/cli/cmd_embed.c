/* cmd_embed.c - TEMPORARY placeholder until the real command lands. */
#include "cli.h"
int cmd_embed(int argc, char **argv)
{
    (void)argc; (void)argv;
    fprintf(stderr, "clipdex: embed: not built yet\n");
    return 1;
}
