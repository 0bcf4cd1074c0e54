package org.jqcowfs.remote;

import java.io.IOException;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.Flow;

/**
 * The body of a range request: exactly the bytes asked for, into an array of that length; more is
 * an error that ends the exchange at once (a server that sends more than it was asked for never
 * fills memory), and the body of any answer but {@code 206 Partial Content} is not read at all (a
 * server that ignores Range is not downloaded: the connection is dropped).
 */
final class RangeBody implements HttpResponse.BodySubscriber<byte[]> {
  private final byte[] data;
  private final boolean wanted;
  private final CompletableFuture<byte[]> result = new CompletableFuture<>();
  private Flow.Subscription subscription;
  private int filled;

  private RangeBody(int bytes, boolean wanted) {
    this.data = wanted ? new byte[bytes] : null;
    this.wanted = wanted;
  }

  /** A handler that reads {@code bytes} bytes of a 206 answer and drops any other body. */
  static HttpResponse.BodyHandler<byte[]> expecting(int bytes) {
    return info -> new RangeBody(bytes, info.statusCode() == 206);
  }

  @Override
  public CompletionStage<byte[]> getBody() {
    return result;
  }

  @Override
  public void onSubscribe(Flow.Subscription s) {
    subscription = s;
    if (!wanted) {
      s.cancel();
      result.complete(null);
    } else {
      s.request(Long.MAX_VALUE);
    }
  }

  @Override
  public void onNext(List<ByteBuffer> items) {
    if (result.isDone()) {
      return;
    }
    for (ByteBuffer b : items) {
      if (b.remaining() > data.length - filled) {
        subscription.cancel();
        result.completeExceptionally(
            new IOException("the server sent more than the " + data.length + " bytes asked for"));
        return;
      }
      int n = b.remaining();
      b.get(data, filled, n);
      filled += n;
    }
  }

  @Override
  public void onError(Throwable t) {
    result.completeExceptionally(t);
  }

  @Override
  public void onComplete() {
    if (!wanted || result.isDone()) {
      result.complete(null);
      return;
    }
    if (filled != data.length) {
      result.completeExceptionally(
          new IOException("the body ended after " + filled + " of " + data.length + " bytes"));
    } else {
      result.complete(data);
    }
  }
}
