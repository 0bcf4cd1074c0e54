package org.jqcowfs.cli.chainops;

import java.util.function.LongConsumer;
import me.tongfei.progressbar.ProgressBar;
import me.tongfei.progressbar.ProgressBarBuilder;
import me.tongfei.progressbar.ProgressBarStyle;

/** {@code -p}: a progress bar over guest bytes on stderr, as convert shows one; or none. */
public final class Progress implements AutoCloseable {
  private final ProgressBar bar; // or null

  /** A bar named {@code task} over {@code guestBytes}, shown only if {@code show}. */
  public Progress(boolean show, String task, long guestBytes) {
    this.bar =
        show
            ? new ProgressBarBuilder()
                .setTaskName(task)
                .setInitialMax(Math.max(1, guestBytes))
                .setUnit(" MiB", 1 << 20)
                .setStyle(ProgressBarStyle.ASCII)
                .build()
            : null;
  }

  /** Told the guest bytes done so far. */
  public LongConsumer consumer() {
    return bar == null ? done -> {} : bar::stepTo;
  }

  @Override
  public void close() {
    if (bar != null) {
      bar.close();
    }
  }
}
